"""The ``ssh`` backend against real sshd hosts: what ran, where, as whom, and what came back.

The hosts come from the profiles file (``tests/clusters/up ssh`` writes ``ssh-local``, an sshd on
127.0.0.1:2222, and ``ssh-remote``, an sshd in its own network namespace with its own hostname,
home and /tmp). Every check reads what actually happened on the far side: through the job's own
report, a command over the transport, or SFTP; never through this machine's paths.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest

from clustrix import (
    BackendUnavailableError,
    ConfigError,
    JobFailedError,
    JobState,
    JobTimeoutError,
    SubmissionError,
    cluster,
)
from clustrix.errors import ResultTooLargeError
from clustrix.transport import FileRead, Transport
from tests.conftest import profile_table, use_variant

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("ssh")]

# Job functions defined here must travel by value: this test module is not installed on the hosts.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

HOSTS = ["ssh-local", "ssh-remote"]
TEST_USER = "cxuser"
RESTART_SSHD_LOCAL = Path(__file__).resolve().parents[1] / "clusters" / "restart-sshd-local"


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest, cluster_profile) -> str:
    return cluster_profile(request.param)


# -- helpers --------------------------------------------------------------------------------------


def _noop() -> None:
    return None


def transport(profile: str) -> Transport:
    """The transport (and so the connection) the profile's jobs use."""
    return cluster(profile=profile)(_noop).session().transport


def remote_exists(t: Transport, path: str) -> bool:
    return t.run(["test", "-e", path]).returncode == 0


def group_alive(t: Transport, pgid: int) -> bool:
    """Whether any non-zombie process of process group ``pgid`` runs on the host."""
    out = t.run(["ps", "-e", "-o", "pgid=,stat="]).check(AssertionError, "ps").stdout
    return any(line.split()[0] == str(pgid) and not line.split()[1].startswith("Z") for line in out.splitlines())


def process_gone(t: Transport, pid: int) -> bool:
    """True when ``pid`` no longer runs on the host (a zombie its init has not reaped counts as gone)."""
    state = t.run(["ps", "-o", "stat=", "-p", str(pid)]).stdout.strip()
    return state == "" or state.startswith("Z")


def remove_job_directory(future) -> None:
    """Failed jobs keep their directory for inspection (cleanup = "on_success"); the tests leave none behind."""
    future.job.session.transport.remove_trees([future.job.directory])


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def our_connections(host: str, port: int) -> set[int]:
    """Local ports of this process's established TCP connections to host:port (seen by ss, not by clustrix)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( dst {host} and dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Lines read: Recv-Q Send-Q LOCAL:PORT PEER:PORT users:(("python",pid=N,fd=M))
    return {int(line.split()[2].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={os.getpid()}," in line}


def server_side_pids(port: int, client_port: int) -> set[int]:
    """The sshd processes serving the connection that comes from ``client_port``."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} and dport = :{client_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


# -- what the job sees ------------------------------------------------------------------------------


def test_the_job_runs_on_the_host_as_its_user_with_its_python_and_env(host):
    @cluster(profile=host, env={"CX_GREETING": "hello from the client", "CX_EMPTY": ""})
    def describe():
        import getpass
        import os
        import socket
        import sys

        return {
            "host": socket.gethostname(),
            "user": getpass.getuser(),
            "uid": os.getuid(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "greeting": os.environ.get("CX_GREETING"),
            "empty": os.environ.get("CX_EMPTY"),
            "job_id": os.environ.get("CLUSTRIX_JOB_ID"),
        }

    future = describe.submit()
    seen = future.result(timeout=60)
    assert seen["user"] == TEST_USER
    assert seen["uid"] != 0 and seen["uid"] != os.getuid()
    assert seen["executable"] == profile_table(host)["python"] == "/opt/clustrix-test/venv/bin/python"
    assert seen["prefix"] == "/opt/clustrix-test/venv"
    assert seen["greeting"] == "hello from the client"
    assert seen["empty"] == ""
    assert seen["job_id"] == future.job_id
    if host == "ssh-remote":
        assert seen["host"] == "clustrix-t2" != socket.gethostname()
    else:
        assert seen["host"] == socket.gethostname()


def test_system_commands_inside_the_job(host):
    @cluster(profile=host, env={"CX_WORD": "from-env"})
    def shell():
        import subprocess

        done = subprocess.run(
            ["sh", "-c", 'id -un; hostname; echo "$CX_WORD"; printf "%s" "$0"', "argv0 with space"],
            capture_output=True,
            text=True,
            check=True,
        )
        failing = subprocess.run(["sh", "-c", "echo oops >&2; exit 7"], capture_output=True, text=True)
        return done.stdout.splitlines(), failing.returncode, failing.stderr

    lines, code, err = shell()
    assert lines[0] == TEST_USER
    assert lines[1] == ("clustrix-t2" if host == "ssh-remote" else socket.gethostname())
    assert lines[2:] == ["from-env", "argv0 with space"]
    assert (code, err) == (7, "oops\n")


def test_profile_python_and_setup_lines_are_what_ran(host):
    @cluster(profile=host, setup=["export MARK=xyz", 'export SETUP_PID="$$"', "cd /tmp"])
    def environment():
        import os
        import sys

        return sys.executable, os.environ.get("MARK"), os.environ.get("SETUP_PID"), os.getcwd(), os.getppid()

    executable, mark, setup_pid, cwd, parent = environment()
    assert executable == profile_table(host)["python"]
    assert mark == "xyz"
    # The setup ran in the job's own shell, the parent of the runner: not in some other process.
    assert int(setup_pid) == parent
    assert cwd == "/tmp"


def test_job_meta_records_host_pid_and_times(host):
    @cluster(profile=host)
    def where():
        import os
        import socket
        import time

        time.sleep(0.2)
        return socket.gethostname(), os.getpid(), time.time()

    future = where.submit()
    hostname, pid, at = future.result(timeout=60)
    meta = future.job.meta
    assert meta is not None
    assert (meta["host"], meta["pid"], meta["user"]) == (hostname, pid, TEST_USER)
    assert meta["executable"] == profile_table(host)["python"]
    start = datetime.datetime.fromisoformat(meta["start"]).timestamp()
    end = datetime.datetime.fromisoformat(meta["end"]).timestamp()
    assert start <= at <= end
    assert end - start >= 0.2
    assert meta["env"]["CLUSTRIX_JOB_ID"] == future.job_id
    assert future.job.state is JobState.COMPLETED


# -- files on the far side ---------------------------------------------------------------------------


def test_files_written_by_one_job_are_read_by_the_next(host):
    t = transport(host)
    directory = f"{t.home()}/cx-files-{uuid.uuid4().hex}"
    blob = bytes(range(256)) * 4
    try:

        @cluster(profile=host)
        def write(directory, blob):
            import os

            os.makedirs(f"{directory}/nested", mode=0o700)
            with open(f"{directory}/text.txt", "w") as f:
                f.write("line one\nline two\n")
            with open(f"{directory}/nested/blob.bin", "wb") as f:
                f.write(blob)
            return sorted(os.path.relpath(os.path.join(d, n), directory) for d, _, ns in os.walk(directory) for n in ns)

        @cluster(profile=host)
        def read(directory):
            import hashlib

            with open(f"{directory}/text.txt") as f:
                text = f.read()
            with open(f"{directory}/nested/blob.bin", "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            return text, digest

        assert write(directory, blob) == ["nested/blob.bin", "text.txt"]
        assert read(directory) == ("line one\nline two\n", hashlib.sha256(blob).hexdigest())
        # Checked over SFTP, not through this machine's filesystem.
        assert t.read_file(f"{directory}/nested/blob.bin") == blob
        assert t.read_file(f"{directory}/text.txt", tail=9) == b"line two\n"
        if host == "ssh-remote":
            # That host has its own home: the files exist only there.
            assert not Path(directory).exists()
    finally:
        t.remove_trees([directory])
    assert not remote_exists(t, directory)


def test_transport_writes_atomically_with_the_mode_and_reads_tails(host):
    t = transport(host)
    directory = f"{t.home()}/cx-transport-{uuid.uuid4().hex}"
    try:
        t.make_dirs([f"{directory}/a/b"], 0o700)
        t.write_files({f"{directory}/a/b/one": b"1" * 100_000, f"{directory}/a/two": b"two"}, 0o640)
        modes = t.run(["stat", "-c", "%a %n", f"{directory}/a", f"{directory}/a/b", f"{directory}/a/b/one"])
        assert [line.split()[0] for line in modes.stdout.splitlines()] == ["700", "700", "640"]
        assert t.read_file(f"{directory}/a/b/one") == b"1" * 100_000
        assert t.read_file(f"{directory}/a/two", tail=2) == b"wo"
        # No temporary file is left behind by the rename.
        assert t.run(["find", directory, "-name", "*.tmp"]).stdout == ""
        with pytest.raises(FileNotFoundError):
            t.read_file(f"{directory}/missing")
        result = t.run(["sh", "-c", 'cat; echo "[$CX_A]" >&2', "sh"], input=b"from stdin", env={"CX_A": "a b"})
        assert (result.returncode, result.stdout, result.stderr) == (0, "from stdin", "[a b]\n")
    finally:
        t.remove_trees([directory])


def test_transport_reads_many_files_and_removes_many_trees_in_one_command_each(host):
    t = transport(host)
    base = f"{t.home()}/cx-many-{uuid.uuid4().hex}"
    # Bytes no text framing survives: every byte value, marker-like lines, no newline at the end.
    hostile = bytes(range(256)) + b"\n@end\n@file\n@none\n" + "é".encode() + b"\xff"
    odd = f"{base}/a dir/it's $HOME; `x`"
    try:
        t.make_dirs([f"{base}/one", odd], 0o700)
        # A symlink planted at a temporary name is replaced, never written through.
        t.run(["sh", "-c", 'echo kept > "$1/victim" && ln -s "$1/victim" "$1/one/blob.tmp"', "sh", base])
        t.write_files({f"{base}/one/blob": hostile, f"{odd}/big": b"x" * 5000, f"{odd}/empty": b""}, 0o640)
        assert t.read_file(f"{base}/victim") == b"kept\n"
        modes = t.run(["stat", "-c", "%a", f"{base}/one/blob", f"{odd}/big"]).stdout.split()
        assert modes == ["640", "640"]
        commands = []
        real_run = t.run
        t.run = lambda argv, **kwargs: commands.append(argv) or real_run(argv, **kwargs)
        try:
            found = t.read_files(
                [
                    FileRead(f"{base}/one/blob"),
                    FileRead(f"{base}/one/missing"),
                    FileRead(f"{odd}/big", tail=3),
                    FileRead(f"{odd}/big", max_size=4999),
                    FileRead(f"{odd}/empty", max_size=10),
                ]
            )
            t.remove_trees([f"{base}/one", f"{base}/a dir", f"{base}/never-was", f"{base}/victim"])
        finally:
            del t.run
        assert len(commands) == 2, "one command to read, one to remove"
        assert found[:3] == [hostile, None, b"xxx"]
        assert isinstance(found[3], ResultTooLargeError) and "5000 bytes" in str(found[3])
        assert found[4] == b""
        assert t.run(["ls", "-A", base]).stdout == ""
    finally:
        t.remove_trees([base])


# -- many jobs --------------------------------------------------------------------------------------


def test_map_over_fifty_items_on_one_connection(host):
    @cluster(profile=host)
    def square(x):
        import os
        import socket

        return x * x, socket.gethostname(), os.getpid()

    address, port = profile_table(host)["host"], profile_table(host)["port"]
    assert square(-1)[0] == 1
    before = our_connections(address, port)
    results = [future.result(timeout=120) for future in square.map(range(50))]
    assert [value for value, _, _ in results] == [x * x for x in range(50)]
    assert {h for _, h, _ in results} == {"clustrix-t2" if host == "ssh-remote" else socket.gethostname()}
    # A worker runs its calls one after another in one process (one per core at most).
    assert len({pid for _, _, pid in results}) <= square.session().backend.cores
    # Fifty jobs, their polls and their files went over the connection that was already open.
    assert before and our_connections(address, port) == before


def test_commands_that_end_at_once_never_drop_the_connection(host):
    # A command that ends before the client's EOF reached its channel made OpenSSH drop the whole
    # connection ("ieof packet referred to nonexistent channel"): every job's files and polls
    # with it. Hundreds of such commands from several threads, as polls and collectors run them.
    t = transport(host)
    assert t.run(["true"]).ok
    address, port = profile_table(host)["host"], profile_table(host)["port"]
    before = our_connections(address, port)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: t.run(["true"]).returncode, range(400)))
    assert codes == [0] * 400
    assert before and our_connections(address, port) == before


def test_pmap_inside_a_job_runs_iterations_at_once_in_separate_processes(host):
    @cluster(profile=host, cores=2, parallel=True)
    def fan_out():
        import os
        import time

        from clustrix import job_cores, pmap

        def work(i):
            start = time.time()
            time.sleep(1.5)
            return i, os.getpid(), start, time.time()

        return os.getpid(), job_cores(), pmap(work, [0, 1])

    job_pid, cores, runs = fan_out()
    assert cores == 2
    assert [i for i, *_ in runs] == [0, 1]
    pids = {pid for _, pid, _, _ in runs}
    assert len(pids) == 2 and job_pid not in pids
    (_, _, start0, end0), (_, _, start1, end1) = runs
    assert start0 < end1 and start1 < end0, f"the iterations did not overlap: {runs}"


# -- failures ----------------------------------------------------------------------------------------


def test_remote_exception_comes_back_with_its_type_and_traceback(host):
    @cluster(profile=host)
    def explode(key):
        def lookup(table):
            return table[key]

        return lookup({"present": 1})

    future = explode.submit("absent")
    with pytest.raises(KeyError) as caught:
        future.result(timeout=60)
    assert caught.value.args == ("absent",)
    notes = "\n".join(caught.value.__notes__)
    assert "Remote traceback" in notes
    # The frames of the remote call, innermost last (source lines do not travel with by-value code).
    assert re.search(r"in explode\n.*in lookup\nKeyError: 'absent'", notes), notes
    assert future.job.meta["host"] in notes
    remove_job_directory(future)


def test_os_exit_is_a_job_failure_with_its_exit_code(host):
    @cluster(profile=host)
    def leave():
        import os
        import sys

        sys.stderr.write("leaving early\n")
        sys.stderr.flush()
        os._exit(3)

    future = leave.submit()
    with pytest.raises(JobFailedError) as caught:
        future.result(timeout=60)
    assert caught.value.exit_code == 3
    assert caught.value.state is JobState.FAILED
    assert "leaving early" in caught.value.stderr_tail
    remove_job_directory(future)


def test_cancel_kills_the_remote_process_group(host):
    t = transport(host)
    pid_file = f"{t.home()}/cx-cancel-{uuid.uuid4().hex}"

    @cluster(profile=host)
    def linger(pid_file):
        import os
        import subprocess
        import time

        child = subprocess.Popen(["sleep", "300"])
        with open(pid_file + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {os.getpgid(0)} {child.pid}")
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(300)

    future = linger.submit(pid_file)
    try:

        def started() -> bool:
            try:
                return bool(t.read_file(pid_file))
            except FileNotFoundError:
                return False

        wait_until(started, 30, "the job to write its pid")
        pid, pgid, child = map(int, t.read_file(pid_file).split())
        assert group_alive(t, pgid)
        assert future.cancel()
        assert future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=1)
        # The whole group, the job's own child included, is gone on the host.
        wait_until(lambda: not group_alive(t, pgid), 20, f"process group {pgid} to end")
        assert process_gone(t, child) and process_gone(t, pid)
        wait_until(lambda: future.job.state is JobState.CANCELLED, 30, "the monitor to see the cancellation")
    finally:
        t.remove_trees([pid_file])
        remove_job_directory(future)


def test_time_limit_ends_the_job_with_a_timeout_error(host):
    @cluster(profile=host, time=datetime.timedelta(seconds=2))
    def overrun():
        import time

        time.sleep(60)

    started = time.monotonic()
    future = overrun.submit()
    with pytest.raises(JobTimeoutError) as caught:
        future.result(timeout=60)
    assert 2 <= time.monotonic() - started < 30
    assert caught.value.state is JobState.TIMEOUT
    remove_job_directory(future)


def test_python_missing_on_the_host_is_refused_at_submission_and_leaves_nothing(host):
    t = transport(host)
    workdir = t.resolve(profile_table(host)["workdir"])
    before = set(t.run(["ls", "-A", workdir]).stdout.split())

    @cluster(profile=host, python="/opt/clustrix-test/no-such-python")
    def anything():
        return 1

    with pytest.raises(SubmissionError, match="no-such-python"):
        anything.submit()
    assert set(t.run(["ls", "-A", workdir]).stdout.split()) == before


# -- the network inside a job -------------------------------------------------------------------------


def test_the_job_serves_and_connects_over_its_own_loopback(host):
    @cluster(profile=host)
    def echo_round_trip(message):
        import socket
        import threading

        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        seen = {}

        def serve():
            conn, peer = server.accept()
            with conn:
                seen["peer"] = peer[0]
                conn.sendall(conn.recv(1024).upper())

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(message)
            reply = client.recv(1024)
        thread.join(10)
        server.close()
        return reply, seen["peer"], port

    reply, peer, port = echo_round_trip(b"ping over loopback")
    assert reply == b"PING OVER LOOPBACK"
    assert peer == "127.0.0.1" and port > 0


# -- faults and hostile input ---------------------------------------------------------------------------


@pytest.mark.alone
def test_client_reconnects_after_sshd_restart_and_dropped_connection(cluster_profile):
    profile = cluster_profile("ssh-local")
    address, port = profile_table(profile)["host"], profile_table(profile)["port"]

    @cluster(profile=profile)
    def slow(x):
        import time

        time.sleep(5)
        return x + 1

    future = slow.submit(41)
    wait_until(lambda: future.state is JobState.RUNNING, 30, "the job to run")
    before = our_connections(address, port)
    assert before
    subprocess.run([str(RESTART_SSHD_LOCAL)], check=True, capture_output=True, timeout=60)
    # A restarted listener leaves open sessions alone; ending ours is what a reboot or a network cut does.
    for client_port in before:
        for pid in server_side_pids(port, client_port):
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not (our_connections(address, port) & before), 10, "the old connection to drop")
    assert future.result(timeout=90) == 42
    after = our_connections(address, port)
    assert after and not (after & before)


def test_unknown_host_key_is_refused_and_nothing_is_created(host, tmp_path, monkeypatch):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    workdir = f"{transport(host).home()}/cx-never-{uuid.uuid4().hex}"
    strict = use_variant(tmp_path, monkeypatch, host, f"{host}-unknown-key", known_hosts=str(empty), workdir=workdir)

    @cluster(profile=strict)
    def never():
        return 1

    with pytest.raises(BackendUnavailableError) as caught:
        never()
    message = str(caught.value)
    assert "is not in" in message and str(empty) in message
    assert "host_key_policy" in message and "accept-new" in message
    assert re.search(r"SHA256:[A-Za-z0-9+/]{43}", message)
    assert empty.read_text() == ""
    # Seen through the trusted profile: nothing of the refused attempt exists on the host.
    assert not remote_exists(transport(host), workdir)


def test_accept_new_adds_an_unknown_key_but_never_a_changed_one(cluster_profile, tmp_path, monkeypatch):
    local = cluster_profile("ssh-local")
    real_known_hosts = Path(profile_table(local)["known_hosts"]).read_text().splitlines()
    local_entry = next(line for line in real_known_hosts if line.startswith("[127.0.0.1]:2222 "))
    remote_entry = next(line for line in real_known_hosts if line.startswith("10.254.77.2 "))

    fresh = tmp_path / "fresh" / "known_hosts"
    accepting = use_variant(
        tmp_path, monkeypatch, local, "accepting", known_hosts=str(fresh), host_key_policy="accept-new"
    )

    @cluster(profile=accepting)
    def hello():
        return "hello"

    assert hello() == "hello"
    assert fresh.read_text().splitlines() == [local_entry]

    # The host now offers a key other than the one on record (here: the other test host's key under its name).
    forged = tmp_path / "forged_known_hosts"
    forged.write_text("[127.0.0.1]:2222 " + remote_entry.split(" ", 1)[1] + "\n")
    changed = use_variant(
        tmp_path, monkeypatch, local, "changed", known_hosts=str(forged), host_key_policy="accept-new"
    )

    @cluster(profile=changed)
    def refused():
        return "should not run"

    with pytest.raises(BackendUnavailableError, match="CHANGED") as caught:
        refused()
    assert "ssh-keygen -R" in str(caught.value)
    assert forged.read_text() == "[127.0.0.1]:2222 " + remote_entry.split(" ", 1)[1] + "\n"


def test_hostile_names_env_values_and_paths_arrive_byte_exact(host, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex
    # Each would be created, in /tmp or in the current directory of some shell, by an injection.
    markers = [f"cx-pwned-{tag}-{i}" for i in range(4)]
    value = f"$(touch /tmp/{markers[0]}); `touch {markers[1]}`; ' \" \\n \n$HOME ${{PATH}} %s \\"
    home = transport(host).home()
    workdir = f"{home}/cx work 'q' \"dq\" $(touch {markers[2]}) `x` {tag}"
    hostile = use_variant(tmp_path, monkeypatch, host, f"{host}-hostile", workdir=workdir)

    @cluster(profile=hostile, name=f"a;b$(touch /tmp/{markers[3]})", env={"X": value, "Y": "-n"})
    def report():
        import os
        import sys

        return os.environ["X"], os.environ["Y"], sys.argv[1:]

    t = transport(hostile)
    try:
        got_value, got_y, job_dirs = report()
        assert got_value == value
        assert got_y == "-n"
        assert len(job_dirs) == 1 and job_dirs[0].startswith(workdir + "/")
        for marker in markers:
            for where in (f"/tmp/{marker}", f"{home}/{marker}", f"{job_dirs[0]}/{marker}"):
                assert not remote_exists(t, where), f"{where} was created on the host: injection"
            assert not Path(f"/tmp/{marker}").exists()
    finally:
        t.remove_trees([workdir])
    assert not remote_exists(t, workdir)


def test_jump_host_carries_the_connection(cluster_profile, tmp_path, monkeypatch):
    cluster_profile("ssh-local")
    remote = cluster_profile("ssh-remote")
    local = profile_table("ssh-local")
    jump = f"{local['user']}@{local['host']}:{local['port']}"
    hopping = use_variant(
        tmp_path, monkeypatch, remote, "ssh-remote-via-jump", jump_host=jump, jump_identity_file=local["identity_file"]
    )

    @cluster(profile=hopping)
    def where():
        import socket

        return socket.gethostname()

    assert where() == "clustrix-t2"
    # The hop's sshd, not this process, holds the TCP connection to the far host's port 22.
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", "( dst 10.254.77.2 and dport = :22 )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '(("sshd",' in out


def test_the_jump_host_never_gets_the_targets_credentials(cluster_profile, tmp_path, monkeypatch):
    cluster_profile("ssh-local")
    remote = cluster_profile("ssh-remote")
    local = profile_table("ssh-local")
    # The target's key would open the hop too (same user and key here): it must not be offered there.
    hopping = use_variant(
        tmp_path,
        monkeypatch,
        remote,
        "ssh-remote-via-keyless-jump",
        jump_host=f"{local['user']}@{local['host']}:{local['port']}",
        jump_identity_file=str(tmp_path / "no-such-key"),
    )
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys or agent to fall back on
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(BackendUnavailableError, match=r"authentication failed|No such file"):
        cluster(profile=hopping)(add)(1, 2)


def test_unreachable_host_is_a_backend_unavailable_error_in_its_own_words(cluster_profile, tmp_path, monkeypatch):
    base = cluster_profile("ssh-local")
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    closed = use_variant(tmp_path, monkeypatch, base, "ssh-local-closed-port", port=1)

    @cluster(profile=closed)
    def never():
        return 1

    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:1: cannot connect: .*Unable to connect"):
        never()


@pytest.mark.expensive
def test_long_running_job_is_watched_with_few_polls(cluster_profile):
    profile = cluster_profile("ssh-remote")

    @cluster(profile=profile, time="00:05:00")
    def long_haul(seconds):
        import time

        start = time.time()
        beats = 0
        while time.time() - start < seconds:
            time.sleep(5)
            beats += 1
            print(f"heartbeat {beats}", flush=True)
        return beats

    future = long_haul.submit(75)
    monitor = future.job.session.monitor
    polls_before = monitor.polls
    beats = future.result(timeout=300)
    assert beats == 15
    meta = future.job.meta
    elapsed = datetime.datetime.fromisoformat(meta["end"]) - datetime.datetime.fromisoformat(meta["start"])
    assert elapsed.total_seconds() >= 75
    assert future.stdout().splitlines()[-1] == "heartbeat 15"
    # Adaptive backoff: a 75 s job is polled a few dozen times at most, not every 50 ms.
    assert monitor.polls - polls_before < 60


# -- password authentication and its lookup ------------------------------------------------------

PASSWORD_FILE = Path(os.environ.get("CLUSTRIX_TEST_STATE", "/var/lib/clustrix-test")) / "keys/cxpass.password"


def _whoami() -> str:
    import getpass

    return getpass.getuser()


def test_password_from_the_environment_logs_in_and_is_never_logged(
    cluster_profile, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    profile = cluster_profile("ssh-password")
    password = PASSWORD_FILE.read_text().strip()
    # As a CI secret arrives: in the environment, never in the profile.
    monkeypatch.setenv("CLUSTRIX_SSH_PASSWORD", password)
    caplog.set_level("DEBUG", logger="clustrix")
    assert cluster(profile=profile)(_whoami)() == "cxpass"
    assert password not in caplog.text
    assert "ssh connected" in caplog.text


def test_wrong_password_in_the_profile_is_refused_clearly(
    cluster_profile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A literal in the profile wins over the environment, which holds the right one.
    monkeypatch.setenv("CLUSTRIX_SSH_PASSWORD", PASSWORD_FILE.read_text().strip())
    variant = use_variant(tmp_path, monkeypatch, cluster_profile("ssh-password"), "ssh-bad", password="wrong")
    with pytest.raises(BackendUnavailableError, match=r"(?i)authentication"):
        cluster(profile=variant)(_whoami)()


# -- a client on another Python than the host's ---------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _other_python() -> Path | None:
    """A CPython on this machine whose major.minor differs from the hosts' (the image's pyenv ones)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in sorted(Path("/root/.pyenv/versions").glob("3.1*/bin/python3")):
        if not candidate.parent.parent.name.startswith(here + ".") and candidate.parent.parent.name >= "3.11":
            return candidate
    return None


def test_python_version_mismatch_is_refused_at_submission_naming_both(cluster_profile, tmp_path, request):
    profile = cluster_profile("ssh-local")
    other = _other_python()
    if other is None:
        pytest.fail("no CPython of another version on this machine to run the client with")
    venv = tmp_path / "venv"
    subprocess.run([str(other), "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", str(REPO / "clustrix-core"), str(REPO / "clustrix-ssh")],
        check=True,
        timeout=600,
        capture_output=True,
    )
    script = (
        "from clustrix import cluster, SubmissionError\n"
        f"try:\n    cluster(profile={profile!r})(abs)(-1)\n"
        "except SubmissionError as exc:\n    print('REFUSED', exc)\n"
    )
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", script], capture_output=True, text=True, timeout=300, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    client = subprocess.run(
        [str(other), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.stdout.startswith("REFUSED"), out.stdout + out.stderr
    assert client in out.stdout and "3.11" in out.stdout


def add(x: int, y: int) -> int:
    return x + y


# -- a workdir someone else could write to ---------------------------------------------------------


def test_files_are_written_on_the_host_through_no_planted_symlink(cluster_profile):
    # A leftover `<file>.tmp` that is a symlink (planted, or a crash's): the transport creates the
    # temporary file afresh and the symlink's target keeps its bytes.
    fn = cluster(profile=cluster_profile("ssh-local"))(add)
    transport = fn.session().transport
    home = transport.home()
    tag = uuid.uuid4().hex[:8]
    victim, target = f"{home}/cx-victim-{tag}", f"{home}/cx-target-{tag}"
    try:
        transport.run(["sh", "-c", 'echo intact > "$1" && ln -s "$1" "$2.tmp"', "sh", victim, target]).check(
            ConfigError, "planting"
        )
        transport.write_files({target: b"written"})
        assert transport.read_file(victim) == b"intact\n"
        assert transport.read_file(target) == b"written"
        assert transport.run(["test", "-L", target]).returncode == 1, "the file itself is no symlink"
    finally:
        transport.run(["rm", "-f", victim, target, f"{target}.tmp"])


def test_a_directory_found_on_the_host_where_a_new_one_is_made_is_refused(cluster_profile):
    fn = cluster(profile=cluster_profile("ssh-local"))(add)
    transport = fn.session().transport
    base = f"{transport.home()}/cx-dirs-{uuid.uuid4().hex[:8]}"
    try:
        plant = 'mkdir -p "$1/elsewhere" "$1/planted" && ln -s "$1/elsewhere" "$1/linked"'
        transport.run(["sh", "-c", plant, "sh", base])
        for name in ("planted", "linked"):
            with pytest.raises(SubmissionError, match=f"{base}/{name} exists already"):
                transport.make_dirs([f"{base}/fresh-{name}", f"{base}/{name}"])
        assert transport.run(["ls", f"{base}/elsewhere"]).stdout == ""
        transport.make_dirs([f"{base}/new/deeper/job"])
        modes = transport.run(["stat", "-c", "%a", f"{base}/new", f"{base}/new/deeper", f"{base}/new/deeper/job"])
        assert modes.stdout.split() == ["700", "700", "700"]
    finally:
        transport.remove_trees([base])


def test_a_workdir_others_could_write_to_is_refused_on_the_real_host(cluster_profile, tmp_path, monkeypatch):
    """ssh-local is this machine as the test user: the test (root) prepares each hostile workdir there."""
    import pwd
    import shutil

    profile = cluster_profile("ssh-local")
    user = pwd.getpwnam(profile_table(profile)["user"])
    tag = uuid.uuid4().hex[:8]
    home = Path(user.pw_dir)
    open_dir, link = home / f"cx-open-{tag}", home / f"cx-link-{tag}"
    foreign = Path(f"/tmp/cx-foreign-{tag}")
    # A symlink another user owns on the way to the user's own home (they could repoint it), and
    # a sticky directory everyone may write to (others could plant entries under guessable names).
    foreign_link, sticky = Path(f"/tmp/cx-foreign-link-{tag}"), home / f"cx-sticky-{tag}"
    nobody = pwd.getpwnam("nobody").pw_uid
    open_dir.mkdir(mode=0o700)
    os.chown(open_dir, user.pw_uid, user.pw_gid)
    open_dir.chmod(0o777)
    link.symlink_to(home)
    os.lchown(link, user.pw_uid, user.pw_gid)
    foreign.mkdir(mode=0o755)
    os.chown(foreign, nobody, -1)
    foreign_link.symlink_to(home)
    os.lchown(foreign_link, nobody, -1)
    sticky.mkdir()
    os.chown(sticky, user.pw_uid, user.pw_gid)
    sticky.chmod(0o1777)
    cases = {
        str(open_dir / "jobs"): f"{open_dir} is writable by group or others \\(mode 777\\)",
        str(link): f"{link} is a symbolic link",
        str(foreign / "jobs"): f"{foreign} belongs to another user",
        str(foreign_link / f"cx-jobs-{tag}"): f"{foreign_link} belongs to another user \\(uid {nobody}\\)",
        str(sticky): f"{sticky} is writable by group or others \\(mode 1777\\)",
    }
    try:
        for number, (workdir, words) in enumerate(cases.items()):
            name = use_variant(tmp_path, monkeypatch, profile, f"hostile{number}", workdir=workdir)
            with pytest.raises(ConfigError, match=words):
                cluster(profile=name)(add)(1, 2)
        assert list(open_dir.iterdir()) == [] and list(foreign.iterdir()) == [], "nothing was staged"
        assert list(sticky.iterdir()) == [] and not (home / f"cx-jobs-{tag}").exists(), "nothing was staged"
        assert cluster(profile=profile)(add)(1, 2) == 3, "the profile's own workdir is fine"
        # Through a symlink the user owns, to a directory of theirs: fine.
        name = use_variant(tmp_path, monkeypatch, profile, "own-link", workdir=str(link / f"cx-jobs-{tag}"))
        assert cluster(profile=name)(add)(2, 2) == 4
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)
        link.unlink()
        foreign_link.unlink()
        shutil.rmtree(foreign, ignore_errors=True)
        shutil.rmtree(sticky, ignore_errors=True)
        shutil.rmtree(home / f"cx-jobs-{tag}", ignore_errors=True)
