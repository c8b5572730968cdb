"""The end record every batch job script leaves: written by the real lines a script runs,
read back by the real command, whatever a job wrote there."""

from __future__ import annotations

import json
import subprocess

from clustrix import endrecord
from clustrix.endrecord import EndRecord


def run_script(directory, body: str, job_id: str = "4711.server") -> None:
    lines = endrecord.script_lines(f"'{directory}'", "$FAKE_JOB_ID")
    subprocess.run(["bash", "-c", "\n".join([*lines, body])], env={"FAKE_JOB_ID": job_id, "PATH": "/usr/bin:/bin"})


def read(*directories) -> list[EndRecord]:
    result = subprocess.run(endrecord.read_command([str(d) for d in directories]), capture_output=True, text=True)
    return [endrecord.parse(line) for line in result.stdout.splitlines()]


def test_script_records_its_id_and_exit_status(tmp_path):
    ran, failed, never = tmp_path / "ran", tmp_path / "failed", tmp_path / "never"
    for d in (ran, failed, never):
        d.mkdir()
    run_script(ran, "true")
    run_script(failed, "exit 3", job_id="12[3].server")
    (ran / "meta.json").write_text(json.dumps({"outcome": "returned"}, indent=1))
    (failed / "meta.json").write_text(json.dumps({"outcome": "raised", "error": "builtins.MemoryError"}, indent=1))
    first, second, third = read(ran, failed, never)
    assert (first.scheduler_id, first.script_exit, first.runner_returned, first.error) == ("4711.server", 0, True, None)
    assert (second.scheduler_id, second.script_exit, second.runner_returned) == ("12[3].server", 3, False)
    assert second.error == "builtins.MemoryError"
    assert third == EndRecord()


def test_what_a_job_wrote_is_never_a_word_for_a_command(tmp_path):
    run_script(tmp_path, "true", job_id="$(reboot)")
    (tmp_path / "meta.json").write_text('{\n "outcome": "raised",\n "error": "x; rm -rf /"\n}')
    (record,) = read(tmp_path)
    assert record.scheduler_id is None and record.error is None and record.script_exit == 0


def test_lines_of_the_reading_command():
    assert endrecord.parse("147 0 returned") == EndRecord("147", 0, True)
    assert endrecord.parse("- 3 -") == EndRecord(None, 3, None)
    assert endrecord.parse("- - raised") == EndRecord(None, None, False)
    assert endrecord.parse("") == EndRecord()
    assert endrecord.parse("147 137 - 1") == EndRecord("147", 137, None, 1)
    assert endrecord.parse("147 0 raised - builtins.MemoryError") == EndRecord(
        "147", 0, False, None, "builtins.MemoryError"
    )
