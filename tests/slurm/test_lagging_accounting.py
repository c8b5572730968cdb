"""slurmdbd lags slurmctld: a job squeue showed running can still be PENDING in sacct for a moment.

Seen for real in CI (a validator check caught RUNNING -> PENDING -> FAILED). The race cannot be
provoked at will, so the rule is pinned here on sacct's own words; the real-world tests run the
same code against live clusters.
"""

from __future__ import annotations

import pytest

from clustrix import BackendUnavailableError, JobState, SubmissionError
from clustrix.config import ClusterConfig
from clustrix.transport import LocalTransport
from clustrix_slurm.backend import SlurmBackend


class Answers(SlurmBackend):
    """The real backend, with Slurm's answers to its queries given in order."""

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        config = ClusterConfig(profile="test", backend="slurm", transport="local")
        super().__init__(config, LocalTransport(config))
        self.answers = answers
        self._accounting = True
        self.asked: list[str] = []

    def run_query(self, argv, what):
        command, text = self.answers.pop(0)
        assert argv[0] == command, (argv, command)
        self.asked.append(command)
        return text


def test_a_stale_pending_line_is_asked_of_squeue_instead():
    backend = Answers(
        [
            ("sacct", ""),  # not recorded yet
            ("squeue", "7|RUNNING|None|vm\n"),
            ("sacct", "7|PENDING|0:0|None|None assigned\n"),  # slurmdbd still behind
            ("squeue", "7|RUNNING|None|vm\n"),
            ("sacct", "7|COMPLETED|0:0|None|vm\n"),
        ]
    )
    assert backend.poll(["7"])["7"].state is JobState.RUNNING
    assert backend.poll(["7"])["7"].state is JobState.RUNNING
    assert backend.poll(["7"])["7"].state is JobState.COMPLETED
    assert backend.asked == ["sacct", "squeue", "sacct", "squeue", "sacct"]


def test_pending_is_believed_for_jobs_never_seen_running():
    backend = Answers([("sacct", "8|PENDING|0:0|Priority|None assigned\n")])
    status = backend.poll(["8"])["8"]
    assert (status.state, status.reason) == (JobState.PENDING, "Priority")
    assert backend.asked == ["sacct"]


def test_a_started_tasks_own_line_outranks_the_arrays_range_line():
    # Seen for real in CI (throttled array, idle tasks cancelled while task 0 ran): sacct's
    # record of the array itself keeps the range it was submitted with, task 0 included.
    backend = Answers(
        [
            ("sacct", "4475_0|RUNNING|0:0|None|vm\n4475_[0-2%1]|CANCELLED by 0|0:0|None|None assigned\n"),
            *SLURMCTLD_LOST_THE_CANCELLED_TASKS,
        ]
    )
    found = backend.poll(["4475_0", "4475_1", "4475_2"])
    assert [found[t].state for t in ("4475_0", "4475_1", "4475_2")] == [JobState.RUNNING, *[JobState.CANCELLED] * 2]


def test_an_ended_range_does_not_speak_for_a_started_task_accounting_has_not_recorded():
    # Seen for real in CI: a worker's call failed as "its worker ended CANCELLED" while the
    # worker ran on (slurmctld logged it completing later): the idle tasks were cancelled
    # before slurmdbd had task 0's own line, and the array's range line covered it.
    backend = Answers(
        [
            ("sacct", "4475_[0-2]|CANCELLED by 0|0:0|None|None assigned\n"),
            *SLURMCTLD_LOST_THE_CANCELLED_TASKS,
        ]
    )
    found = backend.poll(["4475_0", "4475_1", "4475_2"])
    assert [found[t].state for t in ("4475_0", "4475_1", "4475_2")] == [JobState.RUNNING, *[JobState.CANCELLED] * 2]
    assert backend.asked == ["sacct", "squeue", "scontrol"]


# slurmctld's words once an array's pending tasks were cancelled while task 0 runs (Slurm 22.05,
# captured here): they are one record with no task index left, so only sacct's range names them.
SLURMCTLD_LOST_THE_CANCELLED_TASKS = [
    ("squeue", "4475|CANCELLED|Resources|\n4475_0|RUNNING|None|vm\n"),
    (
        "scontrol",
        "JobId=4475 ArrayJobId=4475 ArrayTaskId=4294967294 JobName=a.sh JobState=CANCELLED Reason=Resources "
        "ExitCode=0:0 NodeList=(null) Partition=debug\n"
        "JobId=4476 ArrayJobId=4475 ArrayTaskId=0 JobName=a.sh JobState=RUNNING Reason=None "
        "ExitCode=0:0 NodeList=vm Partition=debug\n",
    ),
]


class SacctGone(Answers):
    """sacct worked at the probe, then slurmdbd went away: its query fails like the real one does."""

    def run_query(self, argv, what):
        if argv[0] == "sacct":
            self.asked.append("sacct")
            raise BackendUnavailableError("polling with sacct: `sacct ...` exited 1: Connection refused")
        return super().run_query(argv, what)


def test_accounting_that_goes_away_falls_back_to_squeue_for_that_poll():
    backend = SacctGone([("squeue", "9|RUNNING|None|vm\n"), ("squeue", ""), ("scontrol", SCONTROL_9_DONE)])
    assert backend.poll(["9"])["9"].state is JobState.RUNNING
    done = backend.poll(["9"])["9"]
    assert (done.state, done.exit_code) == (JobState.COMPLETED, 0)
    assert backend.asked == ["sacct", "squeue", "sacct", "squeue", "scontrol"]


SCONTROL_9_DONE = "JobId=9 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0 NodeList=vm Partition=debug\n"


def test_an_empty_sbatch_answer_is_a_submission_error():
    from tests.golden import render

    with pytest.raises(SubmissionError, match="answered no job id"):
        render(SlurmBackend, "", calls=1)
