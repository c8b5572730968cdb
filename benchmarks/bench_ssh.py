"""Per-call overhead of the ssh backend, next to a bare fabric ``Connection.run`` of Python on the same host.

Both sides start a Python on the host once per call; the difference is what clustrix adds
(staging over SFTP, the detached start, polling, fetching the result, cleaning up). Run by
hand against the ``ssh-local`` test host (``tests/clusters/up ssh``):

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_ssh.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import tomllib
from pathlib import Path

import fabric

from clustrix import cluster

PROFILE = "ssh-local"


def timed(call, n: int) -> list[float]:
    call()  # warm up: connect, check the host's Python, import caches
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    config = Path(os.environ.get("CLUSTRIX_CONFIG", "/var/lib/clustrix-test/clustrix.toml"))
    os.environ["CLUSTRIX_CONFIG"] = str(config)
    profile = tomllib.loads(config.read_text())["profiles"][PROFILE]

    @cluster(profile=PROFILE)
    def trivial(x: int) -> int:
        return x + 1

    connection = fabric.Connection(
        profile["host"],
        user=profile["user"],
        port=profile["port"],
        connect_kwargs={"key_filename": [profile["identity_file"]], "look_for_keys": False},
    )
    connection.client.load_host_keys(profile["known_hosts"])
    command = f"{profile['python']} -c 'print(1 + 1)'"

    raw = timed(lambda: connection.run(command, hide=True, in_stream=False), n)
    ssh = timed(lambda: trivial(1), n)
    connection.close()

    raw_median, ssh_median = statistics.median(raw), statistics.median(ssh)
    print(f"{n} sequential calls against {PROFILE} ({profile['host']}:{profile['port']})")
    print(f"  fabric Connection.run(python -c ...)  median {raw_median * 1000:8.1f} ms")
    print(f"  clustrix ssh backend, trivial(1)      median {ssh_median * 1000:8.1f} ms")
    print(f"  ratio clustrix / raw fabric           {ssh_median / raw_median:8.2f}x")


if __name__ == "__main__":
    main()
