"""Re-attaching: a client process dies while its jobs run; a new process collects them from the journal."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import clustrix
from clustrix.cli import main
from clustrix.journal import journal_path, read_jobs

CLIENT = """
import os, sys
from clustrix import cluster

@cluster(profile=sys.argv[1], name="orphan")
def work(x, fail):
    import time
    time.sleep(2)
    if fail:
        raise KeyError(x)
    return x * 2

print(work.submit(21, False).job_id, work.submit(5, True).job_id, flush=True)
os._exit(0)  # dies at once: no waiting, no clean-up, as a killed notebook would
"""


def test_jobs_of_a_dead_client_are_collected_by_a_new_process(local_profile, capsys):
    profile = local_profile()
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, profile], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    good, bad = out.stdout.split()
    assert {r["job_id"] for r in read_jobs()} == {good, bad}
    assert stat.S_IMODE(journal_path().stat().st_mode) == 0o600, "the journal holds result keys"

    assert main(["result", good]) == 0
    assert capsys.readouterr().out.strip() == "42"
    with pytest.raises(KeyError) as caught:
        clustrix.attach(bad).result(timeout=60)
    assert caught.value.args == (5,) and "Remote traceback" in "".join(caught.value.__notes__)
    assert main(["result", bad]) == 1, "a failed job's directory is kept (cleanup=on_success): collected again"
    assert "KeyError: 5" in capsys.readouterr().out
    with pytest.raises(clustrix.ResultMissingError):
        clustrix.attach(good).result(timeout=60)  # collected once already, and cleaned


def test_attach_to_an_unknown_job_is_a_clear_error(local_profile):
    local_profile()
    with pytest.raises(clustrix.ConfigError, match="not in the journal"):
        clustrix.attach("no-such-job")


CHECKPOINTING_CLIENT = """
import os, sys
from clustrix import cluster

class Count:
    '''Counts to ``steps``, noting what each run of it saw; resumes where it stopped.'''

    def __init__(self):
        self.done, self.runs = 0, []

    def __call__(self, steps):
        import time
        self.runs.append((os.environ.get("FOO"), os.environ.get("FROM_SETUP"), os.environ["CLUSTRIX_JOB_ID"]))
        while self.done < steps:
            time.sleep(0.25)
            self.done += 1
        return self.done, self.runs

    def checkpoint(self, steps):
        return self

fn = cluster(
    profile=sys.argv[1], time="00:00:04", checkpoint_notice=1, max_requeues=20,
    env={"FOO": "bar"}, setup=["export FROM_SETUP=yes"],
)(Count())
print(fn.submit(24).job_id, flush=True)
os._exit(0)
"""


def test_a_checkpointed_call_of_a_dead_client_resumes_with_its_whole_spec(local_profile):
    # 24 steps of 0.25 s do not fit in 4 s: the call checkpoints at least once, and the process
    # that attached submits it again, with the env, setup and limits it was first submitted with.
    profile = local_profile()
    out = subprocess.run(
        [sys.executable, "-c", CHECKPOINTING_CLIENT, profile],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    future = clustrix.attach(out.stdout.strip())
    done, runs = future.result(timeout=240)
    assert done == 24
    assert future.job.requeues >= 1 and len(runs) == future.job.requeues + 1, runs
    assert all(run[:2] == ("bar", "yes") for run in runs), runs
    assert future.job.spec.resources.time == 4 and future.job.spec.max_requeues == 20
