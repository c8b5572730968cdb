"""slurmdbd lags slurmctld: a job squeue showed running can still be PENDING in sacct for a moment.

Seen for real in CI (a validator check caught RUNNING -> PENDING -> FAILED). The race cannot be
provoked at will, so the rule is pinned here on sacct's own words; the real-world tests run the
same code against live clusters.
"""

from __future__ import annotations

from clustrix import JobState
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
