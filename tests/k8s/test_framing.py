"""The result channel of the kubernetes backend without a cluster: the real runner and emit.py in a
child process write a job's files and frame them, and the client's parser gets them back, or says
exactly what is wrong with a log that was cut short, garbled or mixed with other output.

The real cluster carries the same frames through a pod's log in
tests/real_world/test_kubernetes_job_submission_real.py.
"""

from __future__ import annotations

import importlib.resources
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from clustrix import runner
from clustrix_k8s import emit, framing

KEY = "feedfacefeedfacefeedfacefeedface"


def talk_and_return(size: int) -> bytes:
    print("CLUSTRIX-FRAME-BEGIN feedfacefeedfacefeedfacefeedface result.pkl 1 1 00")  # a user's forgery
    print("hello from the call")
    print("to stderr", file=sys.stderr)
    return b"v" * size


def job_log(tmp_path: Path, fn=talk_and_return, args=(10,), limit: int = 6 * 1024**2) -> tuple[str, bytes]:
    """Stage a call as the session does, run the runner and then emit.py: the container's log, and the HMAC key."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    hmac_key = secrets.token_bytes(32)
    call = {"fn": fn, "args": args, "kwargs": {}, "upstream": {}}
    (jobdir / runner.PAYLOAD_FILE).write_bytes(runner.pack("call", call, hmac_key, "cloudpickle", "0.2.0"))
    (jobdir / runner.KEY_FILE).write_text(hmac_key.hex())
    (jobdir / "runner.py").write_bytes(importlib.resources.files("clustrix").joinpath("runner.py").read_bytes())
    (jobdir / "emit.py").write_bytes(importlib.resources.files("clustrix_k8s").joinpath("emit.py").read_bytes())
    log = subprocess.run(
        [
            "sh",
            "-c",
            f'echo "setup says hi"; {sys.executable} runner.py "$1"; {sys.executable} emit.py "$1" {KEY} {limit}',
            "sh",
            str(jobdir),
        ],
        cwd=jobdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert log.returncode == 0, log.stderr
    return log.stdout, hmac_key


def value_of(result: bytes, hmac_key: bytes):
    header, payload = runner.unpack(result, hmac_key, "result")
    return runner.loads(header, payload)


def test_round_trip_through_the_real_runner_and_emitter(tmp_path):
    log, hmac_key = job_log(tmp_path)
    frames = framing.parse(log, KEY)
    assert frames.problems == {} and frames.done
    assert value_of(frames.files["result.pkl"], hmac_key) == {"ok": True, "value": b"v" * 10}
    assert b"hello from the call" in frames.files["stdout"]
    # The user's own fake marker stayed in the call's stdout file: it never reached the log as a line.
    assert frames.files["stdout"].startswith(b"CLUSTRIX-FRAME-BEGIN")
    assert frames.files["stderr"] == b"to stderr\n"
    assert json.loads(frames.files["meta.json"])["outcome"] == "returned"
    assert frames.other == "setup says hi"


def test_a_large_result_arrives_byte_exact(tmp_path):
    log, hmac_key = job_log(tmp_path, args=(3 * 1024**2,))
    frames = framing.parse(log, KEY)
    assert frames.problems == {}
    assert value_of(frames.files["result.pkl"], hmac_key)["value"] == b"v" * (3 * 1024**2)
    assert max(len(line) for line in log.splitlines()) <= emit.LINE


def random_bytes(size: int) -> bytes:
    import os

    return os.urandom(size)


def test_a_result_over_max_result_bytes_becomes_an_authentic_error_naming_the_limit(tmp_path):
    log, hmac_key = job_log(tmp_path, fn=random_bytes, args=(200_000,), limit=100_000)
    frames = framing.parse(log, KEY)
    assert frames.problems == {}
    record = value_of(frames.files["result.pkl"], hmac_key)
    assert record["ok"] is False and record["phase"] == "result"
    assert record["type"] == emit.TOO_LARGE
    assert "max_result_bytes=100000" in record["message"] and "containerLogMaxSize" in record["message"]
    assert len(log) < 100_000, "the oversized result itself was not written to the log"


def test_a_log_cut_inside_the_result_frame_gives_bytes_that_fail_authentication(tmp_path):
    log, hmac_key = job_log(tmp_path, fn=random_bytes, args=(50_000,))
    cut = log[: log.index("CLUSTRIX-FRAME-END " + KEY + " result.pkl") - 5000]
    frames = framing.parse(cut, KEY)
    assert frames.problems["result.pkl"] == "the log ends inside the frame"
    assert not frames.done
    assert "result.pkl: the log ends inside the frame" in frames.describe()
    assert "closing line" in frames.describe()
    with pytest.raises(runner.EnvelopeError):
        runner.unpack(frames.files["result.pkl"], hmac_key, "result")
    # The files framed before the result are whole.
    assert json.loads(frames.files["meta.json"])["outcome"] == "returned"
    assert set(frames.problems) == {"result.pkl"}


def test_a_garbled_line_is_caught_by_the_checksum(tmp_path):
    log, hmac_key = job_log(tmp_path, fn=random_bytes, args=(50_000,))
    lines = log.split("\n")
    begin = next(i for i, line in enumerate(lines) if line.startswith(f"CLUSTRIX-FRAME-BEGIN {KEY} result.pkl"))
    lines[begin + 1] = lines[begin + 1][:100] + ("A" if lines[begin + 1][100] != "A" else "B") + lines[begin + 1][101:]
    frames = framing.parse("\n".join(lines), KEY)
    assert "result.pkl" in frames.problems
    with pytest.raises(runner.EnvelopeError):
        runner.unpack(frames.files["result.pkl"], hmac_key, "result")


def test_a_missing_line_and_a_foreign_marker_inside_a_frame():
    lines = list(emit.frame(KEY, "result.pkl", random_bytes(3 * emit.LINE)))
    assert len(lines) > 3
    frames = framing.parse("\n".join([lines[0], *lines[2:]]), KEY)
    assert "compressed bytes arrived" in frames.problems["result.pkl"]
    interrupted = [lines[0], lines[1], *emit.frame(KEY, "stdout", b"out"), f"{emit.DONE} {KEY} 1"]
    frames = framing.parse("\n".join(interrupted), KEY)
    assert frames.problems["result.pkl"] == "the frame was cut short"
    assert frames.files["stdout"] == b"out" and frames.done


def test_frames_of_another_job_and_plain_output_are_not_taken():
    other_key = "0" * 32
    log = "\n".join(
        [
            "plain output",
            *emit.frame(other_key, "result.pkl", b"not ours"),
            *emit.frame(KEY, "result.pkl", b"ours"),
            f"{emit.DONE} {KEY} 1",
        ]
    )
    frames = framing.parse(log, KEY)
    assert frames.files == {"result.pkl": b"ours"}
    assert frames.other.startswith("plain output\nCLUSTRIX-FRAME-BEGIN " + other_key)


def test_a_log_without_frames_yields_no_files():
    frames = framing.parse("sh: 1: python3: not found\n", KEY)
    assert frames.files == {} and frames.problems == {} and not frames.done
    assert frames.other == "sh: 1: python3: not found"


def test_a_later_whole_frame_replaces_a_damaged_one_and_an_empty_file_travels():
    damaged = list(emit.frame(KEY, "stdout", b"first"))[:-1]
    log = "\n".join([*damaged, *emit.frame(KEY, "stdout", b""), f"{emit.DONE} {KEY} 1"])
    frames = framing.parse(log, KEY)
    assert frames.files == {"stdout": b""} and frames.problems == {}
