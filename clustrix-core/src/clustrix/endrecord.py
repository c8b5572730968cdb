"""The record every batch job leaves in its directory, for what a scheduler does not say.

Some schedulers keep no exit status (Torque's finished records, Slurm's Torque wrapper), name
no started array task (the wrapper), record a cancelled job as a success (OpenPBS) or a kill
for memory as a plain failure (a site's cgroup, an address-space rlimit). So every script the
batch base renders writes, into the directory it runs for (a single job's own, an array task's
first, a worker's own):

- ``job_id``: the scheduler's id of the running job, as it starts;
- ``job_end``: as the script exits (its EXIT trap), its exit status and how many of its
  processes the kernel killed for memory in its memory cgroup;

and the runner's ``meta.json`` there says whether every call returned and what one raised.
``READ`` reads all of it for many directories with one command, a line each, parsed by ``parse``.
"""

from __future__ import annotations

import re

import attrs

ID_FILE = "job_id"
END_FILE = "job_end"

# How many processes the kernel killed for memory in the job's memory cgroup (v1:
# memory.oom_control, v2: memory.events; nothing where there is none): a shell function.
_OOM_KILLS = (
    '_clustrix_oom_kills() { awk -F: \'$2 ~ /(^|,)memory(,|$)/ {v1 = $3} $1 == "0" && $2 == "" {v2 = $3} '
    'END {f = v1 != "" ? "/sys/fs/cgroup/memory" v1 "/memory.oom_control" : "/sys/fs/cgroup" v2 "/memory.events"; '
    'while ((getline l < f) > 0) if (split(l, w, " ") == 2 && w[1] == "oom_kill") print w[2]}\' /proc/self/cgroup; }'
)

# One line per directory: ``<id> <exit> <returned|raised> <memory kills> <error type>``, "-" for
# what is not there. Shell builtins only: no process per directory.
READ = rf"""
for d; do
  j=-; x=-; k=-; o=-; e=-
  [ -r "$d/{ID_FILE}" ] && read -r j < "$d/{ID_FILE}"
  [ -r "$d/{END_FILE}" ] && read -r x k < "$d/{END_FILE}"
  if [ -r "$d/meta.json" ]; then
    o=raised
    while IFS= read -r l; do
      case $l in
        *'"outcome": "returned"'*) o=returned;;
        *'"error": "'*) e=${{l#*'"error": "'}}; e=${{e%%'"'*}};;
      esac
    done < "$d/meta.json"
  fi
  printf '%s %s %s %s %s\n' "${{j:--}}" "${{x:--}}" "$o" "${{k:--}}" "${{e:--}}"
done
"""

# A scheduler's job id as a job may write it: letters, digits and . _ @ [ ] - (never a shell word).
_JOB_ID = re.compile(r"[A-Za-z0-9._@\[\]-]+")
_ERROR_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"\d+")


@attrs.frozen
class EndRecord:
    """What a job left: its scheduler id, its script's exit status (``0`` after a SIGTERM too),
    whether the runner finished every call (``True``: all returned, ``False``: one raised, None:
    it never finished), how many of its processes the kernel killed for memory, and the type of
    the exception a call raised (``builtins.MemoryError``)."""

    scheduler_id: str | None = None
    script_exit: int | None = None
    runner_returned: bool | None = None
    memory_kills: int | None = None
    error: str | None = None


def script_lines(directory: str, job_id: str) -> list[str]:
    """The lines that make a job script leave its record in ``directory`` (a shell word: a quoted
    path or ``"$1"``), the scheduler's id of the running job being the shell expression ``job_id``;
    run before anything that may fail."""
    return [
        f"_clustrix_dir={directory}",
        f'printf "%s\\n" "{job_id}" > "$_clustrix_dir/{ID_FILE}"',
        _OOM_KILLS,
        f'trap \'printf "%s %s\\n" "$?" "$(_clustrix_oom_kills 2>/dev/null)" > "$_clustrix_dir/{END_FILE}"\' EXIT',
    ]


def read_command(directories: list[str]) -> list[str]:
    return ["sh", "-c", READ, "sh", *directories]


def parse(line: str) -> EndRecord:
    """One line of ``READ``'s output; what a job wrote is checked, never trusted as a word."""
    fields = [*line.split(), "-", "-", "-", "-", "-"][:5]
    return EndRecord(
        scheduler_id=fields[0] if fields[0] != "-" and _JOB_ID.fullmatch(fields[0]) else None,
        script_exit=int(fields[1]) if _NUMBER.fullmatch(fields[1]) else None,
        runner_returned={"returned": True, "raised": False}.get(fields[2]),
        memory_kills=int(fields[3]) if _NUMBER.fullmatch(fields[3]) else None,
        error=fields[4] if fields[4] != "-" and _ERROR_TYPE.fullmatch(fields[4]) else None,
    )
