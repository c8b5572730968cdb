"""What the kubernetes backend sends to the API server for fixed specs, and the checks on every value it takes.

The golden file shows the whole Secret and Job for one call; the real cluster runs the
same manifests in tests/real_world/test_kubernetes_job_submission_real.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from clustrix.config import ClusterConfig
from clustrix.errors import ConfigError, SerializationError
from clustrix.profiles import resolve
from clustrix.resources import Resources
from clustrix.spec import JobSpec
from clustrix_k8s import manifest, options
from tests.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden"
KEY = "0123456789abcdef0123456789abcdef"


def add(x: int, y: int) -> int:
    return x + y


def spec(**resources) -> JobSpec:
    return JobSpec(
        fn=add,
        args=(1, 2),
        kwargs={},
        resources=Resources(**resources),
        name="train model;v2",
        env={"DATA": "/data/it's $(HOME) here", "MODE": "fast"},
        setup=("export FROM_SETUP=1",),
    )


def settings(**keys) -> manifest.Settings:
    converted = tuple(sorted((k, options.OPTIONS[k](v)) for k, v in keys.items()))
    config = ClusterConfig(profile="golden", backend="kubernetes", transport="local", options=converted)
    return manifest.Settings.from_config(config, "clustrix-test")


FULL = dict(
    image="registry.example/py:3.11",
    image_pull_policy="IfNotPresent",
    service_account="runner",
    node_selector={"disktype": "ssd"},
    tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    labels={"team": "vision", "example.com/project": "x-1"},
    volumes=[{"pvc": "data", "mount": "/data"}, {"config_map": "settings", "mount": "/etc/app/"}],
    env_from=[{"secret": "credentials", "prefix": "CRED_"}],
    backoff_limit=2,
)


def render(job_spec: JobSpec, keys: dict) -> str:
    chosen = settings(**keys)
    name = manifest.job_name(job_spec, KEY)
    files = {"payload.pkl": b"PAYLOAD", "key": b"HMACKEY", "runner.py": b"RUNNER", "emit.py": b"EMIT"}
    labels = manifest.labels(chosen, "c0ffee123456", name)
    secrets = manifest.secrets(name, chosen.namespace, labels, files, chosen.max_payload_secrets)
    job = manifest.job(job_spec, KEY, name, chosen, "c0ffee123456", [s["metadata"]["name"] for s in secrets])
    return json.dumps({"secrets": secrets, "job": job}, indent=1, sort_keys=True) + "\n"


def golden_text(job_spec: JobSpec, keys: dict) -> str:
    """The manifests as JSON, with the container's script shown apart as the lines it is."""
    data = json.loads(render(job_spec, keys))
    command = data["job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    script, command[2] = command[2], "<the script above>"
    return (
        f"--- the container's sh -c script\n{script}--- the manifests\n{json.dumps(data, indent=1, sort_keys=True)}\n"
    )


def test_full_profile_manifest_matches_golden():
    text = golden_text(spec(cores=2, memory="1.5G", time="01:30:00", gpus=1), FULL)
    assert_golden(text, GOLDEN / "full.txt")


def test_minimal_profile_manifest_matches_golden():
    assert_golden(golden_text(spec(), {"image": "python:3.11"}), GOLDEN / "minimal.txt")


def test_manifest_values_that_matter():
    job = json.loads(render(spec(cores=2, memory="1GB", time="00:05:00"), {"image": "python:3.11"}))["job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": str(1024**3)},
        "limits": {"cpu": "2", "memory": str(1024**3)},
    }
    # The runner holds the limit: a Job deadline would count the time spent waiting for a node.
    assert "activeDeadlineSeconds" not in job["spec"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["name"] == "train-model-v2-0123456789ab"
    assert job["metadata"]["annotations"]["clustrix.io/function"] == "train model;v2"
    env = {item["name"]: item.get("value") for item in container["env"]}
    # Kubernetes expands $(VAR) in env values unless the $ is doubled.
    assert env["DATA"] == "/data/it's $$(HOME) here"
    assert env["CLUSTRIX_JOB_ID"] == job["metadata"]["name"]
    assert env["CLUSTRIX_TIME_LIMIT"] == "300"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("add", "add"),
        ("Train_Model v2!", "train-model-v2"),
        ("a;b$(touch /tmp/x)\n#SBATCH --wrap=x", "a-b-touch-tmp-x-sbatch-wrap-x"),
        ("<lambda>", "lambda"),
        ("___", "job"),
        ("Ünïcödé", "n-c-d"),
        ("x" * 100, "x" * 30),
        ("a" * 29 + "-b", "a" * 29),
    ],
)
def test_job_names_are_dns_1123_labels(name, expected):
    assert options.sanitise(name) == expected
    full = manifest.job_name(JobSpec(add, (), {}, Resources(), name), KEY)
    assert options.is_dns_label(full) and full == f"{expected}-{KEY[:12]}"


def test_large_payload_is_split_across_secrets_and_reassembles():
    payload = bytes(range(256)) * 9000  # 2.2 MiB: three Secrets
    files = {"payload.pkl": payload, "key": b"k", "runner.py": b"r" * 100_000, "emit.py": b"e"}
    secrets = manifest.secrets("job-1", "ns", {}, files, max_secrets=16)
    assert [s["metadata"]["name"] for s in secrets] == ["job-1-in", "job-1-in-1", "job-1-in-2"]
    parts = {}
    for secret in secrets:
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        assert sum(map(len, data.values())) <= manifest.SECRET_LIMIT
        parts.update(data)
    # The container concatenates payload.* in name order.
    assert b"".join(parts[k] for k in sorted(parts) if k.startswith("payload.")) == payload
    assert parts["key"] == b"k"


def test_payload_over_the_secret_budget_is_refused_naming_the_limit():
    files = {"payload.pkl": b"x" * (3 * 1024 * 1024), "key": b"k", "runner.py": b"r", "emit.py": b"e"}
    with pytest.raises(SerializationError, match=r"1 MiB \(Kubernetes' object size limit\).*max_payload_secrets=2"):
        manifest.secrets("job-1", "ns", {}, files, max_secrets=2)


def test_image_is_required():
    with pytest.raises(ConfigError, match="needs image"):
        render(spec(), {})


def test_nul_in_an_env_value_is_refused():
    bad = JobSpec(add, (), {}, Resources(), "f", env={"X": "a\0b"})
    with pytest.raises(ConfigError, match="NUL"):
        render(bad, {"image": "python:3.11"})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("namespace", "Clustrix_Test", "DNS-1123 label"),
        ("namespace", "a" * 64, "DNS-1123 label"),
        ("image", "python:3.11; touch /tmp/x", "image reference"),
        ("image", "python 3", "image reference"),
        ("image_pull_policy", "Sometimes", "Always"),
        ("service_account", "Runner!", "DNS-1123"),
        ("labels", {"team": "a b"}, "value 'a b'"),
        ("labels", {"bad key": "x"}, "name 'bad key'"),
        ("labels", {"team": "x" * 64}, "at most 63"),
        ("labels", {"clustrix.io/client": "fake"}, "clustrix's own"),
        ("labels", {"app.kubernetes.io/managed-by": "me"}, "clustrix's own"),
        ("labels", {"UPPER.example/x": "y"}, "DNS subdomain"),
        ("labels", ["team=a"], "expected a table"),
        ("node_selector", {"zone": "a\nb"}, "value"),
        ("tolerations", [{"key": "gpu", "operator": "Maybe"}], "operator"),
        ("tolerations", [{"operator": "Equal", "value": "x"}], "without a key"),
        ("tolerations", [{"key": "gpu", "effect": "Sometimes"}], "effect"),
        ("tolerations", [{"key": "gpu", "colour": "red"}], "unknown key"),
        ("volumes", [{"pvc": "data"}], "mount = '/path' is required"),
        ("volumes", [{"pvc": "data", "mount": "data"}], "absolute path"),
        ("volumes", [{"pvc": "data", "mount": "/clustrix/in"}], "clustrix's own"),
        ("volumes", [{"pvc": "data", "mount": "/"}], "not /"),
        ("volumes", [{"pvc": "data", "mount": "/a/../clustrix"}], "no '..'"),
        ("volumes", [{"pvc": "data", "secret": "s", "mount": "/x"}], "exactly one"),
        ("volumes", [{"pvc": "Data_1", "mount": "/x"}], "DNS-1123"),
        ("volumes", [{"pvc": "a", "mount": "/x"}, {"pvc": "b", "mount": "/x/"}], "two volumes"),
        ("volumes", [{"pvc": "a", "mount": "/x", "sub_path": "../etc"}], "sub_path"),
        ("volumes", {"pvc": "a", "mount": "/x"}, "list of tables"),
        ("env_from", [{"secret": "s", "prefix": "1X"}], "environment variable name"),
        ("env_from", [{"secret": "s", "config_map": "c"}], "exactly one"),
        ("backoff_limit", -1, "whole number"),
        ("delete_jobs", "sometimes", "always"),
        ("container_error_grace", -1, "seconds"),
        ("max_result_bytes", 10, "whole number"),
        ("ttl_after_finished", 10, "at least 60"),
        ("ttl_after_finished", -1, "at least 60"),
        ("ttl_after_finished", 3600.5, "whole seconds"),
    ],
)
def test_hostile_or_mistaken_profile_values_are_config_errors(key, value, match, tmp_path, monkeypatch):
    config = tmp_path / "clustrix.toml"
    config.write_text('[profiles.k]\nbackend = "kubernetes"\nimage = "python:3.11"\n')
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config))
    with pytest.raises(ConfigError, match=match):
        resolve("k", {key: value})


def test_profile_values_convert_to_hashable_settings(tmp_path, monkeypatch):
    config = tmp_path / "clustrix.toml"
    config.write_text('[profiles.k]\nbackend = "kubernetes"\n')
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config))
    cluster_config, _ = resolve("k", FULL)
    hash(cluster_config)  # one session per distinct configuration
    chosen = manifest.Settings.from_config(cluster_config, "default")
    assert chosen.volumes[1].mount == "/etc/app" and chosen.volumes[1].read_only
    assert not chosen.volumes[0].read_only
    assert chosen.labels == (("example.com/project", "x-1"), ("team", "vision"))


def test_converted_values_survive_the_journal_and_attach(tmp_path, monkeypatch):
    """The journal stores the configuration as JSON; clustrix.attach converts it again with the same converters."""
    config = tmp_path / "clustrix.toml"
    config.write_text('[profiles.k]\nbackend = "kubernetes"\n')
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config))
    first, _ = resolve("k", FULL)
    stored = json.loads(json.dumps(dict(first.options)))
    again, _ = resolve("k", stored)
    assert again.options == first.options
