"""The ``clustrix`` command: backends, profiles, this user's jobs (or --watch them), cancel, logs (or -f), check,
and the cache of results (list, clear)."""

from __future__ import annotations

import argparse
import codecs
import datetime
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from clustrix import cache, plugins, runner
from clustrix.attach import attach, journaled_session
from clustrix.config import load_files
from clustrix.errors import ClustrixError
from clustrix.journal import journal_path, read_jobs
from clustrix.profiles import resolve
from clustrix.session import ClusterSession, get_session

# How often ``logs -f`` looks for new output and asks whether the job ended (tail -f's interval).
FOLLOW_INTERVAL = 1.0


def _session_for(profile: str | None):
    """The session of a profile (None: the default one)."""
    config, _ = resolve(profile, {})
    return get_session(config)


def cmd_backends(_args: argparse.Namespace) -> int:
    for name, cls in plugins.backends().items():
        print(f"backend    {name:12} {cls.__module__}.{cls.__qualname__}")
    for name, cls in plugins.transports().items():
        print(f"transport  {name:12} {cls.__module__}.{cls.__qualname__}")
    return 0


def cmd_profiles(_args: argparse.Namespace) -> int:
    files = load_files()
    if not files.profiles:
        print("no profiles; jobs run on the embedded local backend")
    for name, table in sorted(files.profiles.items()):
        mark = "*" if name == files.default else " "
        where = table.get("host", "this machine")
        print(f"{mark} {name:20} {table.get('backend', 'local'):12} {where}")
        by_file: dict[str, list[str]] = {}
        for key, path in files.origins.get(name, {}).items():
            by_file.setdefault(str(path), []).append(key)
        for path, keys in by_file.items():
            print(f"    {path}: {', '.join(sorted(keys))}")
        if files.refused.get(name):
            print(f"    ignored from the project file (trust_project_profiles): {', '.join(files.refused[name])}")
    for name in sorted(set(files.refused) - set(files.profiles)):
        print(f"  {name:20} ignored: a profile of the project file {files.project} (trust_project_profiles)")
    if files.refused_default is not None:
        print(f"default = {files.refused_default!r} of {files.project} ignored (trust_project_profiles)")
    print("read: " + (", ".join(map(str, files.sources)) or "no config file"))
    return 0


def _find(job_ids: Sequence[str]) -> list[dict]:
    known = {record["job_id"]: record for record in read_jobs()}
    missing = [j for j in job_ids if j not in known]
    if missing:
        raise ClustrixError(f"not in the journal ({journal_path()}): {', '.join(missing)}")
    return [known[j] for j in job_ids]


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.watch is None:
        sys.stdout.write(_jobs_table(args.all))
        return 0
    # Cleared between refreshes only on a terminal: piped into a file, the tables follow each other.
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            # The table is made before the screen is cleared: asking the schedulers takes a while.
            table = _jobs_table(args.all)
            now = datetime.datetime.now().strftime("%H:%M:%S")
            sys.stdout.write(f"{clear}{now}, every {args.watch:g} s (Ctrl-C stops)\n{table}\n")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _jobs_table(everything: bool) -> str:
    """The jobs table: this user's unfinished jobs (``everything``: all), their states asked now."""
    records = read_jobs()
    if not everything:
        records = [r for r in records if r["state"] is None]
    # One poll per cluster the jobs went to (a profile, with the settings they were submitted with).
    by_cluster: dict[str, list[dict]] = {}
    for record in records:
        cluster = json.dumps([record["profile"], record.get("cluster")], sort_keys=True, default=str)
        by_cluster.setdefault(cluster, []).append(record)
    lines = [f"{'JOB ID':34} {'NAME':20} {'PROFILE':14} {'STATE':14} SUBMITTED"]
    for group in by_cluster.values():
        profile = group[0]["profile"]
        unfinished = [r["job_id"] for r in group if r["state"] is None]
        try:
            live = journaled_session(group[0]).backend.poll(unfinished) if unfinished else {}
        except ClustrixError as exc:
            print(f"# {profile or '(no profile)'}: cannot ask the scheduler: {exc}", file=sys.stderr)
            live = {}
        for r in group:
            state = r["state"] or (live[r["job_id"]].state.value if r["job_id"] in live else "?")
            lines.append(f"{r['job_id']:34} {r['name'][:20]:20} {(profile or '-')[:14]:14} {state:14} {r['time']}")
    return "".join(f"{line}\n" for line in lines)


def cmd_cancel(args: argparse.Namespace) -> int:
    for record in _find(args.job_ids):
        journaled_session(record).backend.cancel([record["job_id"]])
        print(f"cancelled {record['job_id']}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    name = runner.STDERR_FILE if args.stderr else runner.STDOUT_FILE
    for record in _find([args.job_id]):
        session = journaled_session(record)
        if args.follow:
            return _follow(session, record, name)
        try:
            data = session.transport.read_file(f"{record['directory']}/{name}")
        except FileNotFoundError:
            raise ClustrixError(f"no {name} for job {record['job_id']} (its directory was cleaned)") from None
        sys.stdout.write(data.decode(errors="replace"))
    return 0


def _follow(session: ClusterSession, record: dict, name: str) -> int:
    """Print the job's output as it grows, like ``tail -f``, until the job ends (or Ctrl-C)."""
    path = f"{record['directory']}/{name}"
    # Incremental: a character cut in two by a read is printed whole with the next one.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    try:
        while True:
            # Asked before reading: once the job has ended, this read has everything it wrote.
            ended = record["state"] is not None or _ended(session, record["job_id"])
            try:
                # Only what was added since the last read.
                data = session.transport.read_file(path, start=offset)
            except FileNotFoundError:
                # Not started yet; or ended, and cleaned by the client that collected it.
                if ended and not offset:
                    raise ClustrixError(f"no {name} for job {record['job_id']} (its directory was cleaned)") from None
                if ended:
                    print(
                        "clustrix: the job ended and its directory was cleaned: its last output may be missing",
                        file=sys.stderr,
                    )
                    return 0
                data = b""
            sys.stdout.write(decoder.decode(data, final=ended))
            sys.stdout.flush()
            offset += len(data)
            if ended:
                return 0
            time.sleep(FOLLOW_INTERVAL)
    except KeyboardInterrupt:
        return 0


def _ended(session: ClusterSession, job_id: str) -> bool:
    status = session.backend.poll([job_id]).get(job_id)
    return status is not None and status.state.finished


def cmd_result(args: argparse.Namespace) -> int:
    """Wait for a job (of this process or any earlier one) and print its value, or its error."""
    future = attach(args.job_id)
    try:
        value = future.result(timeout=args.timeout)
    except Exception as exc:  # noqa: BLE001 - the job's error is what this command reports
        print(f"{type(exc).__name__}: {exc}")
        return 1
    print(repr(value))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for profile in args.profiles or [None]:
        label = profile or "(no profile)"
        try:
            print(f"ok    {label}: {_session_for(profile).backend.check()}")
        except ClustrixError as exc:
            failed += 1
            print(f"FAIL  {label}: {exc}")
    return 1 if failed else 0


def cmd_cache(args: argparse.Namespace) -> int:
    root = args.dir or cache.default_root()
    if args.action == "clear":
        removed = cache.clear(root, args.older_than)
        print(f"removed {removed} cached result(s) from {root}")
        return 0
    found = cache.entries(root)
    by_function: dict[str, list[cache.Entry]] = {}
    for entry in found:
        by_function.setdefault(entry.function, []).append(entry)
    print(f"{'RESULTS':>8} {'BYTES':>12} {'NEWEST':19} FUNCTION")
    for function, group in by_function.items():
        newest = datetime.datetime.fromtimestamp(max(e.modified for e in group)).isoformat(timespec="seconds")
        print(f"{len(group):8} {sum(e.size for e in group):12} {newest:19} {function}")
    print(f"{len(found)} cached result(s), {sum(e.size for e in found)} bytes, in {root}")
    return 0


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])", re.ASCII)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age(text: str) -> float:
    match = _AGE.fullmatch(text.strip())
    if not match or not float(match.group(1)) > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an age such as 90s, 30m, 12h or 7d")
    return float(match.group(1)) * _AGE_UNITS[match.group(2)]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above zero")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clustrix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="installed backends and transports").set_defaults(run=cmd_backends)
    sub.add_parser("profiles", help="configured profiles (* marks the default)").set_defaults(run=cmd_profiles)
    jobs = sub.add_parser("jobs", help="your unfinished jobs and their states now")
    jobs.add_argument("--all", action="store_true", help="finished jobs too")
    jobs.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_seconds,
        metavar="SECONDS",
        help="refresh the table every SECONDS (default 2) until Ctrl-C",
    )
    jobs.set_defaults(run=cmd_jobs)
    cancel = sub.add_parser("cancel", help="cancel jobs by id")
    cancel.add_argument("job_ids", nargs="+")
    cancel.set_defaults(run=cmd_cancel)
    logs = sub.add_parser("logs", help="a job's stdout (or --stderr)")
    logs.add_argument("job_id")
    logs.add_argument("--stderr", action="store_true")
    logs.add_argument("-f", "--follow", action="store_true", help="print output as it comes, until the job ends")
    logs.set_defaults(run=cmd_logs)
    result = sub.add_parser("result", help="wait for a job, from any client process, and print its value")
    result.add_argument("job_id")
    result.add_argument("--timeout", type=float, default=None, help="seconds to wait (default: for ever)")
    result.set_defaults(run=cmd_result)
    check = sub.add_parser("check", help="probe profiles' schedulers")
    check.add_argument("profiles", nargs="*")
    check.set_defaults(run=cmd_check)
    cached = sub.add_parser("cache", help="results stored by cache=True: list them, or clear them")
    cached_sub = cached.add_subparsers(dest="action", required=True)
    for action, text in (("list", "cached results, by function"), ("clear", "remove cached results")):
        command = cached_sub.add_parser(action, help=text)
        command.add_argument(
            "--dir", type=Path, default=None, help="the cache directory (default: your user cache's clustrix/results)"
        )
        command.set_defaults(run=cmd_cache)
    cached_sub.choices["clear"].add_argument(
        "--older-than", type=_age, default=None, metavar="AGE", help="only those stored AGE ago or earlier (7d, 12h)"
    )
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ClustrixError as exc:
        print(f"clustrix: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
