"""The HTML report (clustrix.report) on hand-made data: the tables and timeline it draws, that it
escapes what tests and schedulers wrote, and that headless Chromium renders it, offline."""

from __future__ import annotations

import datetime
import re

from clustrix.report import ENDINGS, QUEUED, Span, render_html, timeline_svg

HOSTILE = '<script>document.body.dataset.pwned = "1"</script><img src=x onerror="document.body.dataset.pwned=1">'
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).isoformat()


def job(job_id: str, test: str, state: str, submitted: float, started=None, ended=None) -> dict:
    return {
        "job_id": job_id,
        "test": test,
        "cluster": "slurm",
        "state": state,
        "submitted": at(submitted),
        "started": at(started) if started is not None else None,
        "ended": at(ended) if ended is not None else None,
    }


def validated(job_id: str, passed: bool, message: str) -> dict:
    """The validator's record of a job with one check, of its value."""
    actual = "42" if passed else "None"
    value = {"name": "value", "passed": passed, "expected": "42", "actual": actual, "message": message}
    category = None if passed else "user_exception"
    return {"job_id": job_id, "passed": passed, "error_category": category, "checks": [value]}


def report() -> dict:
    hostile_test = f"tests/real_world/test_x.py::test_ok[{HOSTILE}]"
    hostile_job = f"13{HOSTILE}"
    return {
        "passed": False,
        "duration": 12.5,
        "clusters": {"slurm": [{"profile": "slurm", "available": True, "detail": HOSTILE}], "sge": []},
        "tests": [
            {"test": hostile_test, "cluster": "slurm", "outcome": "passed", "duration": 3.0, "job_ids": ["11", "12"]},
            {"test": "b.py::bad", "cluster": "slurm", "outcome": "failed", "duration": 5, "job_ids": [hostile_job]},
        ],
        "jobs": [
            job("11", hostile_test, "COMPLETED", 0, 1, 3),
            job("12", hostile_test, "FAILED", 0.5, 2, 4),
            job(hostile_job, "b.py::bad", "PENDING", 1),
        ],
        "validation": [
            validated("11", True, "value returned"),
            validated("12", False, HOSTILE),
        ],
    }


def spans_drawn(svg: str) -> dict[str, str]:
    """Each span's id -> its fill colour."""
    return dict(re.findall(r'<g id="((?:queued|running)-\d+)">\s*<path [^>]*style="fill: (#[0-9a-f]{6})', svg))


def test_the_timeline_has_a_queued_span_per_job_and_a_running_span_per_job_that_started():
    spans = [Span.from_record(record) for record in report()["jobs"]]
    drawn = spans_drawn(timeline_svg(list(reversed(spans))))
    # Rows in order of submission; the job that never started is only queued.
    assert drawn == {
        "queued-0": QUEUED,
        "running-0": ENDINGS["completed"],
        "queued-1": QUEUED,
        "running-1": ENDINGS["failed"],
        "queued-2": QUEUED,
    }


def test_the_page_escapes_what_tests_and_schedulers_wrote():
    page = render_html(report())
    assert "<script" not in page.lower() and "<img" not in page.lower()
    # The test's name (tests table, two jobs' checks), the probe, a check's message, a job id (tests table, timeline).
    assert page.count("&lt;script&gt;") == 7


def test_the_page_loads_nothing_from_elsewhere():
    page = render_html(report())
    assert all(ref.startswith("#") for ref in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert not re.search(r"<link|@import|@font-face|url\((?!#)", page)


def test_a_browser_renders_the_tables_and_the_timeline_and_runs_no_script_of_a_test(tmp_path, open_in_chromium):
    page = tmp_path / "report.html"
    page.write_text(render_html(report()))
    rendered = open_in_chromium(page)
    rows = [row["class"] for row in rendered.elements("tr") if row.get("class")]
    assert rows == ["profile", "test passed", "test failed", "job", "check passed", "job", "check failed"]
    assert [g["id"] for g in rendered.elements("g") if re.fullmatch(r"(queued|running)-\d+", g.get("id") or "")] == [
        "queued-0",
        "running-0",
        "queued-1",
        "running-1",
        "queued-2",
    ]
    assert "pwned" not in str(rendered.elements("body"))
    assert rendered.pixels(ENDINGS["completed"]) > 100 and rendered.pixels(ENDINGS["failed"]) > 100
    assert rendered.pixels(QUEUED) > 100
