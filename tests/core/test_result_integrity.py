"""Results read back from disk are authenticated before unpickling; missing and corrupt ones are named.

Each job damages its own result file from an ``atexit`` handler: that runs after the
runner has written the result and before the process exits, exactly the window in
which a shared filesystem could alter, truncate, swap or lose it.
"""

from __future__ import annotations

import pytest

from clustrix import ResultCorruptError, ResultMissingError, ResultTamperedError, cluster


def damage(how: str) -> int:
    import atexit
    import sys
    from pathlib import Path

    path = Path(sys.argv[1]) / "result.pkl"

    def act():
        if how == "flip":
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        elif how == "truncate":
            path.write_bytes(path.read_bytes()[:-10])
        elif how == "garbage":
            path.write_bytes(b"not an envelope")
        elif how == "remove":
            path.unlink()

    atexit.register(act)
    return 42


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("flip", ResultTamperedError),
        ("truncate", ResultTamperedError),
        ("garbage", ResultCorruptError),
        ("remove", ResultMissingError),
    ],
)
def test_damaged_result_is_refused(local_profile, how, error):
    job = cluster(profile=local_profile())(damage)
    with pytest.raises(error):
        job(how)


def test_result_swapped_from_another_job_is_refused(local_profile):
    profile = local_profile(cleanup="never")

    @cluster(profile=profile)
    def value(x):
        return x

    first = value.submit("first")
    assert first.result() == "first"

    def swap_in(other_dir: str) -> str:
        import atexit
        import os
        import shutil
        import sys

        atexit.register(shutil.copy, os.path.join(other_dir, "result.pkl"), os.path.join(sys.argv[1], "result.pkl"))
        return "second"

    with pytest.raises(ResultTamperedError, match="authentication failed"):
        cluster(profile=profile)(swap_in)(first.job.directory)
