"""The README's first example: real jobs on the embedded local backend, no configuration."""

import os

from clustrix import cluster


@cluster(cores=1, memory="1GB", time="00:05:00")
def add(x: int, y: int) -> int:
    return x + y


@cluster(cores=1)
def where() -> str:
    return f"job {os.environ['CLUSTRIX_JOB_ID']} ran in process {os.getpid()}"


if __name__ == "__main__":
    print("add(10, 32) =", add(10, 32))
    print(where(), f"(this process is {os.getpid()})")
    futures = add.map(range(5), range(5))
    print("add.map(range(5), range(5)) =", [f.result() for f in futures])
    try:
        cluster(lambda: 1 / 0)()
    except ZeroDivisionError as exc:
        print("a remote ZeroDivisionError came back as itself:", exc.__notes__[0].splitlines()[0])
