"""The HTML report of a real-cluster test run, from the JSON report of scripts/run_cluster_job_tests.py.

Per cluster: each test's outcome and duration, the validator's checks with expected and
actual, and a timeline of the run's jobs (queued and running spans). One self-contained
page: the timeline is matplotlib's SVG inlined, its text drawn as paths, so opening the
page loads no script, font or URL. Needs the ``report`` extra
(``pip install 'clustrix-core[report]'``).
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from clustrix.log import get_logger
from clustrix.state import JobState

QUEUED = "#b8b8b8"
# A job's running span takes the colour of how it ended.
ENDINGS = {"completed": "#2e8b57", "failed": "#d62728", "cancelled": "#ff7f0e", "not seen to end": "#1f77b4"}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("clustrix", "templates"),
    # Test names, check values and scheduler messages are arbitrary text: escape all of it.
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def ending(state: str) -> str:
    """How a job in ``state`` ended, as the timeline's legend names it."""
    job_state = JobState(state)
    if job_state in (JobState.COMPLETED, JobState.CANCELLED):
        return job_state.value.lower()
    return "failed" if job_state.finished else "not seen to end"


def _time(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


@attrs.frozen
class Span:
    """One job on the timeline: queued from submission to start, running from start to end."""

    job_id: str
    state: str
    submitted: datetime.datetime
    started: datetime.datetime | None = None
    ended: datetime.datetime | None = None

    @classmethod
    def from_record(cls, job: dict[str, Any]) -> Span:
        return cls(
            job_id=job["job_id"],
            state=job["state"],
            submitted=datetime.datetime.fromisoformat(job["submitted"]),
            started=_time(job.get("started")),
            ended=_time(job.get("ended")),
        )


def timeline_svg(spans: Sequence[Span]) -> str:
    """A Gantt chart of the jobs as an ``<svg>`` element; rows ``queued-N`` and ``running-N`` (ids), N from 0."""
    rows = sorted(spans, key=lambda span: span.submitted)
    origin = rows[0].submitted
    # A job still unfinished when the run ended (none was seen to end) is drawn up to the last time known.
    last = max(t for span in rows for t in (span.submitted, span.started, span.ended) if t is not None)

    def seconds(when: datetime.datetime) -> float:
        return (when - origin).total_seconds()

    figure = Figure(figsize=(10, 1.4 + 0.3 * len(rows)), layout="constrained")
    axes = figure.add_subplot()
    for row, span in enumerate(rows):
        queued_until = span.started or span.ended or last
        bar = axes.barh(row, seconds(queued_until) - seconds(span.submitted), left=seconds(span.submitted), height=0.6)
        bar.patches[0].set(color=QUEUED, gid=f"queued-{row}")
        if span.started:
            colour = ENDINGS[ending(span.state)]
            width = seconds(span.ended or last) - seconds(span.started)
            bar = axes.barh(row, width, left=seconds(span.started), height=0.6)
            # An edge as wide as a line keeps a job of a few milliseconds visible.
            bar.patches[0].set(facecolor=colour, edgecolor=colour, linewidth=1, gid=f"running-{row}")
    axes.set_yticks(range(len(rows)), [span.job_id for span in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the first submission")
    axes.grid(axis="x", alpha=0.3)
    figure.legend(
        handles=[Patch(color=QUEUED, label="queued")]
        + [Patch(color=colour, label=f"running, {end}") for end, colour in ENDINGS.items()],
        loc="outside lower center",
        ncols=len(ENDINGS) + 1,
        fontsize=8,
        frameon=False,
    )
    buffer = io.StringIO()
    # Text as paths: the page then needs no font; a fixed salt keeps the output the same run to run.
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "clustrix"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _checks(tests: list[dict[str, Any]], validation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The validator's jobs of these tests, each with the test that submitted it."""
    test_of = {job_id: test["test"] for test in tests for job_id in test["job_ids"]}
    return [{**job, "test": test_of[job["job_id"]]} for job in validation if job["job_id"] in test_of]


def render_html(report: dict[str, Any]) -> str:
    clusters = []
    for kind, profiles in report["clusters"].items():
        tests = [test for test in report["tests"] if test["cluster"] == kind]
        spans = [Span.from_record(job) for job in report["jobs"] if job["cluster"] == kind]
        clusters.append(
            {
                "kind": kind,
                "profiles": profiles,
                "tests": tests,
                "validated": _checks(tests, report["validation"]),
                # matplotlib escapes what it writes into the SVG; the page takes it as markup.
                "timeline": Markup(timeline_svg(spans)) if spans else None,  # noqa: S704
            }
        )
    return _env.get_template("report.html").render(
        passed=report["passed"],
        duration=report.get("duration"),
        generated=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        clusters=clusters,
    )


def write_html(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report))
    get_logger().info("HTML report written", path=str(path))
    return path
