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
    import os
    import sys

    path = os.path.join(sys.argv[1], "result.pkl")

    def act():
        if how == "flip":
            data = bytearray(open(path, "rb").read())
            data[len(data) // 2] ^= 0xFF
            open(path, "wb").write(bytes(data))
        elif how == "truncate":
            data = open(path, "rb").read()
            open(path, "wb").write(data[: len(data) - 10])
        elif how == "garbage":
            open(path, "wb").write(b"not an envelope")
        elif how == "remove":
            os.remove(path)

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
