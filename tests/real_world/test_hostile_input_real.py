"""Hostile strings through every string option a call has, on every real backend: a bounded,
seeded fuzz loop.

Each value is glued from pieces a shell, a scheduler's directive parser or a terminal would
act on (command substitution, quotes, newlines, control characters, NUL, unicode that
reorders text), several of them trying to create a marker file. A call either runs and sees
exactly what it was given, or fails with a ClustrixError; no marker file is ever created.
``CLUSTRIX_FUZZ_SEED`` replays a run (the seed is in every failure's message).
"""

from __future__ import annotations

import os
import random
import uuid

import pytest

from clustrix import cluster
from clustrix.errors import ClustrixError
from tests.conftest import on_each_cluster

pytestmark = [pytest.mark.real_world]

SEED = int(os.environ.get("CLUSTRIX_FUZZ_SEED") or 20261205)
# Calls per profile and kind: bounded, so a run costs each cluster a few jobs submitted together.
CASES = 8

PIECES = (
    "$(touch {marker})",
    "`touch {marker}`",
    "; touch {marker}",
    "\ntouch {marker}\n",
    "' ; touch {marker} ; '",
    '" ; touch {marker} ; "',
    "\\",
    "$HOME",
    "${IFS}",
    "$(VAR)",
    "%",
    "#",
    "*",
    "?",
    "~",
    "&",
    "|",
    ">",
    "!",
    "=",
    "-",
    " ",
    "\t",
    "\r",
    "\x00",
    "\x01",
    "\x1b[31m",
    "\x7f",
    "é",
    "中文",
    "🙂",
    "\u202e",
    "\u2028",
    "a",
    "Z",
    "_",
    "0",
)


def hostile(rng: random.Random, marker: str) -> str:
    return "".join(rng.choice(PIECES).replace("{marker}", marker) for _ in range(rng.randint(1, 6)))


def environment(names: list[str]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def nothing() -> str:
    return "ran"


def marker_exists(fn, marker: str) -> bool:
    """The marker on this machine, or on the far host where jobs run there (ssh-remote)."""
    if os.path.exists(marker):
        return True
    transport = fn.session().transport
    return not transport.is_local and transport.run(["test", "-e", marker]).returncode == 0


@pytest.mark.parametrize(
    "profile", on_each_cluster("local", "ssh-local", "ssh-remote", "slurm", "pbs", "pbs-pro", "sge", "kubernetes")
)
def test_hostile_strings_run_exactly_or_fail_as_clustrix_errors(profile, cluster_profile, local_profile):
    name = local_profile() if profile == "local" else cluster_profile(profile)
    rng = random.Random(f"{SEED}-{profile}")
    marker = f"/tmp/cx-fuzz-{uuid.uuid4().hex}"
    where = f"(CLUSTRIX_FUZZ_SEED={SEED}, profile {profile})"
    submitted, refused = [], []
    # Names and environments: a call that is accepted must see exactly what it was given.
    for _ in range(CASES):
        env = {hostile(rng, marker) if rng.random() < 0.3 else f"CX_{rng.randrange(10**6)}": hostile(rng, marker)}
        job_name = hostile(rng, marker)
        try:
            fn = cluster(profile=name, name=job_name, env=env)(environment)
            submitted.append((fn.submit(list(env)), env, (job_name, env)))
        except ClustrixError as exc:
            refused.append(exc)
    # Where the job goes and what runs it: anything accepted runs, or fails as a ClustrixError.
    for _ in range(CASES):
        key = rng.choice(["queue", "account", "extra", "python"])
        value = hostile(rng, marker)
        try:
            fn = cluster(profile=name, **{key: [value] if key == "extra" else value})(nothing)
            submitted.append((fn.submit(), None, (key, value)))
        except ClustrixError as exc:
            refused.append(exc)
    for future, env, given in submitted:
        try:
            value = future.result(timeout=300)
        except ClustrixError:
            continue
        except Exception as exc:  # the point: anything else is a defect
            pytest.fail(f"{given!r} raised {type(exc).__name__}: {exc} {where}")
        expected = env if env is not None else "ran"
        assert value == expected, f"{given!r} came back as {value!r} {where}"
    assert not marker_exists(cluster(profile=name)(nothing), marker), f"a hostile string ran a command {where}"
    assert submitted, f"every case was refused: nothing reached the cluster {where}: {refused[:3]}"
