"""The journal: safe with several client processes writing at once, and robust to lines that are not records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from clustrix.journal import read_jobs

WRITER = """
import sys
from clustrix import journal
for i in range(int(sys.argv[2])):
    journal._append({"event": "submitted", "key": f"{sys.argv[1]}-{i}", "job_id": str(i), "pad": "x" * 20000})
"""


def test_concurrent_writers_lose_and_tear_no_line(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("CLUSTRIX_JOURNAL", str(path))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{n}", "300"], env=dict(os.environ)) for n in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    records = [json.loads(line) for line in path.read_text().splitlines()]  # no line torn
    # A job left over from an earlier test may finish into this journal too: count the writers' own.
    ours = [r["key"] for r in records if r["key"].startswith(("w0-", "w1-", "w2-", "w3-"))]
    assert sorted(ours) == sorted(f"w{n}-{i}" for n in range(4) for i in range(300))
    assert {f"w{n}-{i}" for n in range(4) for i in range(300)} <= {job["key"] for job in read_jobs()}


def test_lines_that_are_not_records_are_skipped(tmp_path, monkeypatch, caplog):
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("CLUSTRIX_JOURNAL", str(path))
    path.write_text(
        '{"event": "submitted", "key": "a", "job_id": "1"}\n'
        "[1, 2]\n"
        '"a string"\n'
        '{"event": "finished", "key": "a", "state": "COMPLETED"}\n'
        '{"event": "submitted", "key": "b", "job_id": "2"'  # torn by a crash
    )
    with caplog.at_level("WARNING", logger="clustrix"):
        jobs = read_jobs()
    assert [(j["key"], j["state"]) for j in jobs] == [("a", "COMPLETED")]
    assert sum("not a record" in r.getMessage() for r in caplog.records) == 3
