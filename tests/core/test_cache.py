"""``cache=``, ``options()`` and ``map(resources=...)`` on the local backend, with real jobs.

What was submitted is read from the journal (one record per call the session submitted, with
its job id: calls of one ``map`` batch share the id before ``#``); a call answered from the
cache never reaches it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clustrix import cluster
from clustrix.errors import ConfigError, SerializationError
from clustrix.journal import read_jobs

OFFSET = 10


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's cache and state directories under ``tmp_path``; returns the default cache root."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return tmp_path / "xdg-cache" / "clustrix" / "results"


def submitted() -> list[str]:
    """The job ids of every call submitted so far, in order."""
    return [record["job_id"] for record in read_jobs()]


def stored(root: Path) -> list[Path]:
    return sorted(path for path in root.glob("*/*") if not path.name.startswith("."))


def test_a_stored_result_returns_without_a_job(local_profile, cache_root):
    @cluster(profile=local_profile(), cache=True)
    def square(x):
        return x * x

    assert [f.result() for f in square.map(range(4))] == [0, 1, 4, 9]
    assert len(submitted()) == 4
    assert len(stored(cache_root)) == 4

    futures = square.map(range(6))
    # The four found are resolved before anything else happens; only the two new calls were submitted.
    assert [f.done() for f in futures[:4]] == [True] * 4
    assert [f.result() for f in futures] == [0, 1, 4, 9, 16, 25]
    assert len(submitted()) == 6
    assert all(f.job_id.startswith("cached-") and f.state.value == "COMPLETED" for f in futures[:4])
    assert futures[0].stdout() == ""
    assert square(5) == 25
    assert len(submitted()) == 6
    assert oct(cache_root.stat().st_mode & 0o777) == "0o700"
    assert {oct(path.stat().st_mode & 0o777) for path in stored(cache_root)} == {"0o600"}


def test_the_key_follows_code_closure_globals_arguments_and_resources_not_time(local_profile, cache_root, monkeypatch):
    profile = local_profile()

    def make(factor):
        @cluster(profile=profile, cache=True, cores=1, time="00:05:00")
        def scaled(x):
            return x * factor + OFFSET

        return scaled

    assert make(2)(3) == 16
    assert len(submitted()) == 1
    assert make(2)(3) == 16, "the same closure: found"
    assert make(2).options(time="00:09:00", memory="1GB", name="other")(3) == 16, "time, memory, name: found"
    assert len(submitted()) == 1
    assert make(3)(3) == 19, "another closure: run"
    assert make(2)(4) == 18, "another argument: run"
    assert make(2).options(cores=2)(3) == 16, "other cores: run"
    assert len(submitted()) == 4
    monkeypatch.setattr(sys.modules[__name__], "OFFSET", 20)
    assert make(2)(3) == 26, "a global the code reads changed: run"
    assert len(submitted()) == 5

    @cluster(profile=profile, cache=True, cores=1, time="00:05:00")
    def scaled(x):
        return x * 2 + OFFSET + 0

    assert scaled(3) == 26, "other code of the same name: run"
    assert len(submitted()) == 6


SCRIPT = """
import sys
from clustrix import cluster

LABELS = {"a", "b", "c", "d", "e"}

@cluster(profile=sys.argv[1], cache=True)
def describe(x, options):
    return (x, sorted(LABELS), sorted(options["tags"]), options["weights"])

futures = describe.map(range(3), [{"tags": {"x", "y", "z"}, "weights": {"w": 1.5, "v": -0.0}}] * 3)
ran = ["cached" if f.job_id.startswith("cached-") else "run" for f in futures]
print(all(f.result() for f in futures), ",".join(ran))
"""


def test_the_key_is_the_same_in_another_process_and_another_file(local_profile, cache_root, tmp_path):
    """Other hash seeds (sets iterate in another order), another path and other line numbers."""
    profile = local_profile()
    first = tmp_path / "first.py"
    first.write_text(SCRIPT)
    moved = tmp_path / "elsewhere" / "moved.py"
    moved.parent.mkdir()
    moved.write_text("\n\n# moved down three lines\n" + SCRIPT)

    def run(script: Path, seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, str(script), profile], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip()

    assert run(first, "1") == "True run,run,run"
    assert run(first, "2") == "True cached,cached,cached"
    assert run(moved, "3") == "True cached,cached,cached"
    assert len(submitted()) == 3


def test_untrusted_entries_are_run_again(local_profile, cache_root, caplog):
    @cluster(profile=local_profile(), cache=True)
    def triple(x):
        return 3 * x

    assert [f.result() for f in triple.map([1, 2, 3])] == [3, 6, 9]
    one, two, three = (path for _, path in sorted((p.read_bytes(), p) for p in stored(cache_root)))
    entries = {path: path.read_bytes() for path in (one, two, three)}
    # One tampered with (a byte of the value changed), one cut short, one another call's entry.
    data = bytearray(entries[one])
    data[len(data) // 2] ^= 0xFF
    one.write_bytes(bytes(data))
    two.write_bytes(entries[two][:20])
    three.write_bytes(entries[one if one != three else two])
    caplog.set_level(logging.WARNING, logger="clustrix")

    assert [f.result() for f in triple.map([1, 2, 3])] == [3, 6, 9]
    assert len(submitted()) == 6, "none of the three was trusted"
    assert caplog.text.count("cache entry") == 3
    assert "not trusted" in caplog.text and "another call's result" in caplog.text
    assert {path: path.read_bytes() for path in entries} != {path: bytes(data) for path in entries}
    assert [f.result() for f in triple.map([1, 2, 3])] == [3, 6, 9]
    assert len(submitted()) == 6, "their new entries are trusted"


def test_an_entry_made_with_another_users_key_is_run_again(local_profile, cache_root, tmp_path, monkeypatch):
    @cluster(profile=local_profile(), cache=True)
    def negate(x):
        return -x

    assert negate(4) == -4
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another-user-state"))
    assert negate(4) == -4
    assert len(submitted()) == 2


def test_exceptions_are_not_cached(local_profile, cache_root, tmp_path):
    ready = tmp_path / "ready"

    @cluster(profile=local_profile(), cache=True)
    def when_ready(path):
        if not Path(path).exists():
            raise FileNotFoundError(path)
        return "ready"

    with pytest.raises(FileNotFoundError):
        when_ready(str(ready))
    assert stored(cache_root) == []
    ready.touch()
    assert when_ready(str(ready)) == "ready"
    assert when_ready(str(ready)) == "ready"
    assert len(submitted()) == 2


def test_a_cache_directory_from_the_profile(local_profile, cache_root, tmp_path):
    directory = tmp_path / "sweep-cache"

    @cluster(profile=local_profile(cache=str(directory)))
    def add_one(x):
        return x + 1

    assert add_one(1) == 2
    assert add_one(1) == 2
    assert len(submitted()) == 1
    assert len(stored(directory)) == 1 and not cache_root.exists()


def test_bad_cache_settings_are_refused(local_profile, cache_root, tmp_path):
    @cluster(profile=local_profile(), cache=5)
    def nothing():
        return None

    with pytest.raises(ConfigError, match="cache=5"):
        nothing()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ConfigError, match="mode 755"):
        nothing.options(cache=str(shared))()
    assert submitted() == []


def clustrix_cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("clustrix")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=os.environ)


def test_cli_lists_and_clears_the_cache(local_profile, cache_root):
    profile = local_profile()

    @cluster(profile=profile, cache=True)
    def first(x):
        return x

    @cluster(profile=profile, cache=True)
    def second(x):
        return -x

    [f.result() for f in first.map(range(3))]
    second(1)
    out = clustrix_cli("cache", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    counts = {line.split()[-1]: int(line.split()[0]) for line in lines[1:-1]}
    assert counts == {
        "tests.core.test_cache.test_cli_lists_and_clears_the_cache._locals_.first": 3,
        "tests.core.test_cache.test_cli_lists_and_clears_the_cache._locals_.second": 1,
    }
    assert lines[-1].startswith("4 cached result(s),") and lines[-1].endswith(str(cache_root))

    assert clustrix_cli("cache", "clear", "--older-than", "1d").stdout.startswith("removed 0 ")
    old = stored(cache_root)[:2]
    for path in old:
        os.utime(path, (0, 0))
    assert clustrix_cli("cache", "clear", "--older-than", "1d").stdout.startswith("removed 2 ")
    assert len(stored(cache_root)) == 2 and not any(path.exists() for path in old)
    assert clustrix_cli("cache", "clear").stdout.startswith("removed 2 ")
    assert clustrix_cli("cache", "list").stdout.splitlines()[-1].startswith("0 cached result(s)")
    bad = clustrix_cli("cache", "clear", "--older-than", "soon")
    assert bad.returncode == 2 and "expected an age" in bad.stderr


# -- options() and map(resources=...) ------------------------------------------------------------


def test_options_override_the_decorators_settings(local_profile):
    @cluster(profile=local_profile(), cores=1)
    def cores(_x=None):
        return os.environ["CLUSTRIX_CORES"]

    assert cores.options(cores=2)() == "2"
    assert cores.options(cores=2).submit().result() == "2"
    assert [f.result() for f in cores.options(cores=2).map(range(2))] == ["2", "2"]
    assert cores() == "1"


def test_options_are_checked_when_given(local_profile):
    @cluster(profile=local_profile())
    def fn():
        return None

    with pytest.raises(ConfigError, match="memory='lots'"):
        fn.options(memory="lots")
    with pytest.raises(ConfigError, match="cores=0"):
        fn.options(cores=0)
    with pytest.raises(ConfigError, match="time='soon'"):
        fn.options(time="soon")
    with pytest.raises(ConfigError, match="profile"):
        fn.options(profile="other")
    assert submitted() == []


def test_a_map_with_two_resource_groups_makes_two_submissions(local_profile):
    @cluster(profile=local_profile(), cores=1)
    def cores_seen(x):
        return x, int(os.environ["CLUSTRIX_CORES"])

    futures = cores_seen.map(range(6), resources=lambda x: {"cores": 1 + x % 2})
    assert [f.result() for f in futures] == [(x, 1 + x % 2) for x in range(6)]
    batches = {job_id.partition("#")[0] for job_id in submitted()}
    assert len(submitted()) == 6 and len(batches) == 2
    assert {f.job_id.partition("#")[0] for f in futures[0::2]} != {f.job_id.partition("#")[0] for f in futures[1::2]}
    assert all(f.batch == futures for f in futures), "Ctrl-C cancels the whole map"

    listed = cores_seen.map(range(4), resources=[{"cores": 2}, {"cores": 2}, {}, {"cores": 1}])
    assert [f.result()[1] for f in listed] == [2, 2, 1, 1]
    assert len({job_id.partition("#")[0] for job_id in submitted()}) == 4, "{} and cores=1 are one group"


def test_bad_per_call_resources_submit_nothing(local_profile):
    @cluster(profile=local_profile())
    def fn(x):
        return x

    with pytest.raises(ConfigError, match="2 settings for 3 calls"):
        fn.map(range(3), resources=[{}, {}])
    with pytest.raises(ConfigError, match="call 1"):
        fn.map(range(3), resources=[{}, 4, {}])
    with pytest.raises(ConfigError, match="memory='much'"):
        fn.map(range(3), resources=lambda x: {"memory": "much" if x == 2 else "1GB"})
    with pytest.raises(ConfigError, match="expected a callable or a list"):
        fn.map(range(3), resources="cores=2")
    assert submitted() == []


def test_cached_results_in_a_map_with_resource_groups(local_profile, cache_root):
    @cluster(profile=local_profile(), cache=True)
    def cores_seen(x):
        return x, int(os.environ["CLUSTRIX_CORES"])

    first = cores_seen.map(range(4), resources=lambda x: {"cores": 1 + x % 2})
    assert [f.result() for f in first] == [(0, 1), (1, 2), (2, 1), (3, 2)]
    again = cores_seen.map(range(6), resources=lambda x: {"cores": 1 + x % 2})
    assert [f.result() for f in again] == [(x, 1 + x % 2) for x in range(6)]
    assert len(submitted()) == 6


def test_an_argument_that_cannot_be_keyed_is_refused_before_anything_is_submitted(local_profile, cache_root):
    import threading

    @cluster(profile=local_profile(), cache=True)
    def holds(_lock):
        return None

    with pytest.raises(SerializationError, match="cannot compute the cache key"):
        holds(threading.Lock())
    assert submitted() == []
