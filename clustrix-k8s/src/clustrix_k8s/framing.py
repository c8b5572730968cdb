"""The client's half of the result channel: a pod's log back into the job's files.

``parse(log, key)`` finds the frames ``emit.py`` wrote for job ``key`` and checks each
one (base64, zlib, size, sha256). A frame that fails a check is reported with what is
wrong, and a result frame that arrived damaged still yields the bytes that could be
decoded, so the core's HMAC check refuses them as a corrupt result instead of the job
looking as if it wrote nothing. Lines outside frames (what the setup lines or a
failing interpreter printed) are kept as the container's own words.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib

import attrs

from clustrix_k8s.emit import BEGIN, DONE, END

RESULT = "result.pkl"


@attrs.frozen
class Frames:
    """What one pod's log held for one job."""

    files: dict[str, bytes]
    # File name -> why its frame was refused (truncated, checksum, ...).
    problems: dict[str, str]
    # The log's lines outside any frame of this job.
    other: str
    # The emitter's closing line was there, with the count of frames it wrote.
    done: bool

    def describe(self) -> str:
        """One line for logs and job status reasons: what was wrong, if anything."""
        parts = [f"{name}: {why}" for name, why in sorted(self.problems.items())]
        if not self.done:
            parts.append("the log ends before the emitter's closing line")
        return "; ".join(parts)


def _decode(header: list[str], body: list[str]) -> tuple[bytes, str | None]:
    """The file's bytes from one frame, and what is wrong with the frame (None when it is whole)."""
    try:
        size, packed_size, digest = int(header[0]), int(header[1]), header[2]
    except (IndexError, ValueError):
        return b"", "malformed frame header"
    try:
        packed = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        return b"", "the frame is not valid base64"
    problem = f"{len(packed)} of {packed_size} compressed bytes arrived" if len(packed) != packed_size else None
    try:
        data = zlib.decompressobj().decompress(packed)
    except zlib.error as exc:
        return b"", problem or f"cannot decompress: {exc}"
    if problem:
        return data, problem
    if len(data) != size:
        return data, f"{len(data)} of {size} bytes after decompression"
    if hashlib.sha256(data).hexdigest() != digest:
        return data, "sha256 does not match"
    return data, None


def parse(log: str, key: str) -> Frames:
    """The files framed for job ``key`` in ``log``; the last whole frame of a file wins."""
    files: dict[str, bytes] = {}
    damaged: dict[str, bytes] = {}
    problems: dict[str, str] = {}
    other: list[str] = []
    done = False
    current: tuple[str, list[str]] | None = None
    body: list[str] = []
    for line in log.split("\n"):
        words = line.split(" ")
        if current is None:
            if len(words) >= 3 and words[0] == BEGIN and words[1] == key:
                current, body = (words[2], words[3:]), []
            elif len(words) == 3 and words[0] == DONE and words[1] == key:
                done = True
            elif line:
                other.append(line)
            continue
        name, header = current
        if words[0] == END and words[1:] == [key, name]:
            data, problem = _decode(header, body)
            current = None
            if problem is None:
                files[name] = data
                problems.pop(name, None)
                damaged.pop(name, None)
            elif name not in files:
                problems[name] = problem
                damaged[name] = data
        elif words[0] in (BEGIN, END, DONE):
            # A marker where frame lines belong: this frame was cut short; read the line again.
            problems[name] = "the frame was cut short"
            damaged[name] = _decode(header, body)[0]
            current = None
            if len(words) >= 3 and words[0] == BEGIN and words[1] == key:
                current, body = (words[2], words[3:]), []
            elif len(words) == 3 and words[0] == DONE and words[1] == key:
                done = True
        else:
            body.append(line)
    if current is not None:
        name, header = current
        if name not in files:
            problems[name] = "the log ends inside the frame"
            damaged[name] = _decode(header, body)[0]
    if RESULT in problems and RESULT not in files:
        # Handed on as it arrived: authentication fails on it, and the job reads as corrupt.
        files[RESULT] = damaged.get(RESULT, b"")
    return Frames(files=files, problems=problems, other="\n".join(other), done=done)
