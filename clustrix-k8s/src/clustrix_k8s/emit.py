"""The pod's half of the result channel: a job's files, framed and checksummed, on the container's stdout.

This file travels to the pod in the job's Secret next to ``runner.py`` and runs there as
``python3 emit.py JOBDIR KEY MAX_RESULT_BYTES`` once the runner has ended. It needs only
the standard library (and, for a result too large to send, the runner beside it and the
serializer the runner used). Pods cannot reach the API server, so the container's log
is the only way back: the client reads it through the API when the Job has ended
(``clustrix_k8s.framing`` parses it; this module's ``frame`` is the one encoder).

One frame per file::

    CLUSTRIX-FRAME-BEGIN <job key> <file> <size> <zlib size> <sha256 of the file>
    <base64 of zlib(file)>, in lines of LINE characters
    CLUSTRIX-FRAME-END <job key> <file>

then ``CLUSTRIX-FRAMES-DONE <job key> <count>``. The checksum catches a log cut short
(the kubelet rotates container logs at its containerLogMaxSize) or garbled; the HMAC
inside result.pkl, checked by the client, is what authenticates it. The user's prints
never reach these lines: the runner sends the call's output to files, which travel as
frames themselves.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import zlib
from collections.abc import Iterator

BEGIN = "CLUSTRIX-FRAME-BEGIN"
END = "CLUSTRIX-FRAME-END"
DONE = "CLUSTRIX-FRAMES-DONE"
# Below containerd's 16 KiB log line limit, past which a line is split into partial lines.
LINE = 8192
# The client keeps only the last MiB of a job's output; the pod sends the last 256 KiB of each,
# so that output never crowds the result out of the kubelet's log size limit.
OUTPUT_TAIL = 256 * 1024
FILES = ("meta.json", "stdout", "stderr", "result.pkl")
TOO_LARGE = "clustrix_k8s.ResultTooLargeError"


def frame(key: str, name: str, data: bytes, packed: bytes | None = None) -> Iterator[str]:
    """The lines (without newlines) that carry ``data`` as file ``name`` of job ``key``.

    ``packed`` is ``zlib.compress(data, 6)`` when the caller has it already.
    """
    if packed is None:
        packed = zlib.compress(data, 6)
    text = base64.b64encode(packed).decode("ascii")
    yield f"{BEGIN} {key} {name} {len(data)} {len(packed)} {hashlib.sha256(data).hexdigest()}"
    for start in range(0, len(text), LINE):
        yield text[start : start + LINE]
    yield f"{END} {key} {name}"


def _read(path: str, tail: int | None = None) -> bytes | None:
    try:
        with open(path, "rb") as f:
            if tail is not None:
                f.seek(max(0, os.fstat(f.fileno()).st_size - tail))
            return f.read()
    except FileNotFoundError:
        return None


def _too_large(jobdir: str, result: bytes, packed: int, limit: int) -> bytes:
    """An authentic result saying why the real one cannot travel: the client raises it as an error."""
    sys.path.insert(0, jobdir)
    import runner  # the job's own runner.py, copied beside this file

    with open(os.path.join(jobdir, runner.KEY_FILE), "rb") as f:
        key = bytes.fromhex(f.read().decode())
    header, _ = runner.unpack(result, key, "result")
    outcome = {
        "ok": False,
        "phase": "result",
        "type": TOO_LARGE,
        "message": (
            f"the result is {len(result)} bytes ({packed} compressed), over max_result_bytes={limit}: "
            "results come back through the pod's log, which the kubelet caps (containerLogMaxSize, "
            "10 MiB by default); return less, or write large data to a volume"
        ),
        "traceback": "",
    }
    return runner.pack("result", outcome, key, header["serializer"], header["clustrix"])


def main(argv: list[str]) -> int:
    jobdir, key, limit = argv[0], argv[1], int(argv[2])
    out = sys.stdout
    count = 0
    out.write("\n")  # whatever the setup lines printed last ends here, never inside a frame marker
    for name in FILES:
        data = _read(os.path.join(jobdir, name), OUTPUT_TAIL if name in ("stdout", "stderr") else None)
        if data is None:
            continue
        packed = None
        if name == "result.pkl":
            packed = zlib.compress(data, 6)
            if len(packed) > limit:
                data, packed = _too_large(jobdir, data, len(packed), limit), None
        for line in frame(key, name, data, packed):
            out.write(line + "\n")
        count += 1
    out.write(f"{DONE} {key} {count}\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
