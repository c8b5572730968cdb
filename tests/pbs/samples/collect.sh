#!/usr/bin/env bash
# Regenerate the PBS (Torque dialect) samples in this directory from the real test cluster
# (tests/clusters/up slurm pbs): slurm-wlm-torque's qsub/qstat/qdel over Slurm "main". Run as root.
# Each sample file is the command's stdout, byte for byte; a non-empty stderr goes to
# <file>.stderr; MANIFEST.tsv lists file, exit code and command line. Job ids differ from run to
# run, and plain `qstat` lists every job Slurm main still remembers (MinJobAge 300 s), the test
# suite's too.
set -u
cd "$(dirname "$0")"
STATE=${CLUSTRIX_TEST_STATE:-/var/lib/clustrix-test}
export SLURM_CONF=$STATE/slurm/main/slurm.conf
export PATH=$STATE/pbs/bin:$PATH
[ "$(command -v qsub)" = "$STATE/pbs/bin/qsub" ] || { echo "no $STATE/pbs/bin/qsub: run tests/clusters/up slurm pbs" >&2; exit 1; }
W=$(mktemp -d /tmp/pbs-samples.XXXXXX); chmod 1777 "$W"
printf 'file\texit\tcommand\n' > MANIFEST.tsv

# cap FILE CMD...: run CMD (in $W), keep its stdout in FILE, stderr in FILE.stderr (if any), record it.
cap() {
    local f=$1 rc; shift
    (cd "$W" && "$@") > "$f" 2> "$f.stderr"; rc=$?
    [ -s "$f.stderr" ] || rm -f "$f.stderr"
    printf '%s\t%s\t%s\n' "$f" "$rc" "$(printf '%q ' "$@" | sed "s|$W|\$W|g; s/ \$//")" >> MANIFEST.tsv
    return 0
}
sub() { (cd "$W" && qsub "$@"); }
# state ID: the job's one-letter state in `qstat ID`.
state() { qstat "$1" 2>/dev/null | awk -v id="$1" '$1 == id {print $5; exit}'; }
wait_state() { local i; for i in $(seq $(($3 * 5))); do [[ $(state "$1") =~ $2 ]] && return 0; sleep 0.2; done
    echo "warning: job $1 is '$(state "$1")', not $2" >&2; return 1; }

mk() { # mk NAME WALLTIME BODY: a job script with #PBS lines
    printf '#!/bin/sh\n#PBS -N %s\n#PBS -l nodes=1:ppn=1,walltime=%s\n%s\n' "$1" "$2" "$3" > "$W/$1.pbs"
}
mk sample-running 00:05:00 'sleep 300'
mk sample-array 00:05:00 'echo "task $PBS_ARRAY_INDEX of $PBS_ARRAY_ID"; sleep 300'
mk sample-pending 00:05:00 'sleep 300'
mk sample-done 00:01:00 'env | grep "^PBS_" | sort'
mk sample-exit3 00:01:00 'echo exiting 3; exit 3'
mk sample-walltime 00:01:00 'sleep 300'
mk sample-array-env 00:01:00 'env | grep "^PBS_" | sort'
chmod 755 "$W"/*.pbs

cap qstat-version.txt qstat --version
cap qstat-help.txt qstat -help
cap qsub-sbatchline.txt qsub --sbatchline -l nodes=1:ppn=2,walltime=00:10:00,mem=200mb -N name -o "$W/o.out" -e "$W/e.err" "$W/sample-done.pbs"

cap qsub.txt qsub -o "$W/running.out" -e "$W/running.err" "$W/sample-running.pbs"
RUN=$(cat qsub.txt)
cap qsub-array.txt qsub -t 1-3 -o "$W/array-%a.out" -e "$W/array-%a.err" "$W/sample-array.pbs"
ARR=$(cat qsub-array.txt)
PEND=$(sub -o "$W/pending.out" -e "$W/pending.err" "$W/sample-pending.pbs")
HELD=$(sub -h -o "$W/held.out" -e "$W/held.err" "$W/sample-pending.pbs")
wait_state "$RUN" '^R$' 60; sleep 2
cap qstat.txt qstat
cap qstat-ids-running-array-pending-held.txt qstat "$RUN" "$ARR" "$PEND" "$HELD"
cap qstat-a-ids.txt qstat -a "$RUN" "$ARR" "$PEND"
cap qstat-n-ids.txt qstat -n "$RUN" "$ARR" "$PEND"
cap qstat-f-running.txt qstat -f "$RUN"
cap qstat-f-pending.txt qstat -f "$PEND"
cap qstat-f-held.txt qstat -f "$HELD"
cap qstat-f-array.txt qstat -f "$ARR"
# A started array task is a job of its own in Slurm, with its own numeric id (ArrayJobId=$ARR,
# ArrayTaskId=1): Torque's 98[1] form does not exist here, and `qstat $ARR` shows only the tasks
# that have not started.
TASK1=$(scontrol show job -o "$ARR" | tr ' ' '\n' | awk -F= '$1 == "JobId" {id=$2} $1 == "ArrayTaskId" && $2 == "1" {print id}')
[ -n "$TASK1" ] && cap qstat-f-array-task1-by-own-id.txt qstat -f "$TASK1"
[ -n "$TASK1" ] && cap qstat-array-task1-by-own-id.txt qstat "$TASK1"
cap qstat-f-array-task.txt qstat -f "${ARR}_1"
cap qstat-array-task.txt qstat "${ARR}_2"
cap qstat-t.txt qstat -t
cap qstat-t-array.txt qstat -t "$ARR"
cap scontrol-array.txt scontrol show job -o "$ARR"
cap qdel-running.txt qdel "$RUN"
cap qdel-array.txt qdel "$ARR"
cap qdel-pending.txt qdel "$PEND"
cap qdel-held.txt qdel "$HELD"
wait_state "$RUN" '^C$' 30
cap qstat-f-cancelled.txt qstat -f "$RUN"
cap qstat-f-array-cancelled.txt qstat -f "$ARR"
cap qstat-cancelled-array-pending.txt qstat "$RUN" "$ARR" "$PEND" "$HELD"

DONE=$(sub -o "$W/done.out" -e "$W/done.err" "$W/sample-done.pbs")
E3=$(sub -o "$W/exit3.out" -e "$W/exit3.err" "$W/sample-exit3.pbs")
WALL=$(sub -o "$W/walltime.out" -e "$W/walltime.err" "$W/sample-walltime.pbs")
AENV=$(sub -t 1-2 -o "$W/array-env-%a.out" -e "$W/array-env-%a.err" "$W/sample-array-env.pbs")
wait_state "$DONE" '^C$' 60
wait_state "$E3" '^C$' 60
cap qstat-f-completed.txt qstat -f "$DONE"
cap qstat-completed.txt qstat "$DONE"
cp "$W/done.out" job-output-pbs-env.txt
for i in $(seq 150); do [ -s "$W/array-env-2.out" ] && break; sleep 0.2; done
cp "$W/array-env-2.out" job-output-pbs-env-array-task2.txt
cap qstat-f-exit3.txt qstat -f "$E3"
cap qstat-exit3.txt qstat "$E3"
cap qdel-finished.txt qdel "$DONE"
cap qdel-unknown.txt qdel 99999999
cap qstat-unknown.txt qstat 99999999
cap qstat-f-unknown.txt qstat -f 99999999
cap qsub-unknown-queue.txt qsub -q nosuch "$W/sample-done.pbs"
cap qsub-missing-script.txt qsub "$W/no-such-script.pbs"
cap pbsnodes-a.txt pbsnodes -a
# Slurm's minimum time limit is one minute; the job is killed at about 70 s.
wait_state "$WALL" '^R$' 60
cap qstat-f-walltime-running.txt qstat -f "$WALL"
wait_state "$WALL" '^C$' 120
cap qstat-f-walltime-exceeded.txt qstat -f "$WALL"
cap scontrol-walltime-exceeded.txt scontrol show job -o "$WALL"
cp "$W/walltime.err" job-stderr-walltime-exceeded.txt
rm -rf "$W"
