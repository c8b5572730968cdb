#!/usr/bin/env bash
# Regenerate the SGE samples in this directory from the real test cluster (tests/clusters/up sge).
# Run as root on a machine where that cluster is up and idle. Each sample file is the command's
# stdout, byte for byte; a non-empty stderr goes to <file>.stderr; MANIFEST.tsv lists file, exit
# code and command line. Job ids differ from run to run.
set -u
cd "$(dirname "$0")"
W=$(mktemp -d /tmp/sge-samples.XXXXXX); chmod 1777 "$W"
printf 'file\texit\tcommand\n' > MANIFEST.tsv

# cap FILE CMD...: run CMD, keep its stdout in FILE, stderr in FILE.stderr (if any), record it.
cap() {
    local f=$1 rc; shift
    "$@" > "$f" 2> "$f.stderr"; rc=$?
    [ -s "$f.stderr" ] || rm -f "$f.stderr"
    printf '%s\t%s\t%s\n' "$f" "$rc" "$(printf '%q ' "$@" | sed "s|$W|\$W|g; s/ \$//")" >> MANIFEST.tsv
    return 0
}
# sub ARGS...: qsub -terse, print the job number only.
sub() { local id; id=$(cd "$W" && qsub -terse "$@") || return 1; echo "${id%%.*}"; }
# state ID: the job's state letters in `qstat` (empty when it left qstat).
state() { qstat | awk -v id="$1" '$1 == id {print $5; exit}'; }
# wait_state ID REGEX SECONDS
wait_state() { local i; for i in $(seq $(($3 * 5))); do [[ $(state "$1") =~ $2 ]] && return 0; sleep 0.2; done; return 1; }
# wait_acct ID SECONDS: the job left qstat and qacct knows it.
wait_acct() { local i; for i in $(seq $(($2 * 5))); do
    if [ -z "$(state "$1")" ] && qacct -j "$1" >/dev/null 2>&1; then return 0; fi; sleep 0.2; done; return 1; }

cat > "$W/sleep.sh" <<'S'
#!/bin/sh
sleep "${1:-300}"
S
cat > "$W/ok.sh" <<'S'
#!/bin/sh
echo "job $JOB_ID task $SGE_TASK_ID on $QUEUE"
S
cat > "$W/exit3.sh" <<'S'
#!/bin/sh
echo "exiting 3"
exit 3
S
cat > "$W/eat.sh" <<'S'
#!/bin/sh
exec python3 -c 'b = bytearray(400 * 1024 * 1024); print(len(b))'
S
chmod 755 "$W"/*.sh

# ---- Eqw: the output file's directory does not exist.
EQW=$(sub -N sample-eqw -o /nonexistent-dir/eqw.out -j y "$W/ok.sh")
wait_state "$EQW" '^Eqw$' 60 || echo "warning: job $EQW is '$(state "$EQW")', not Eqw" >&2
cap qstat-eqw.txt qstat
cap qstat-xml-eqw.xml qstat -xml
cap qstat-j-eqw.txt qstat -j "$EQW"
cap qstat-f-after-eqw.txt qstat -f
cap qdel-eqw.txt qdel "$EQW"
qmod -c '*' >/dev/null 2>&1

# ---- running + pending + array + held (2 slots: one single job and array task 1 run).
cap qsub-terse.txt qsub -terse -N sample-running -l h_rt=0:10:0,h_vmem=200M -pe smp 1 -o "$W/running.out" -j y "$W/sleep.sh" 300
RUN=$(cut -d. -f1 qsub-terse.txt)
cap qsub-terse-array.txt qsub -terse -N sample-array -t 1-3 -o "$W" -j y "$W/sleep.sh" 300
ARR=$(cut -d. -f1 qsub-terse-array.txt)
PEND=$(sub -N sample-pending -o "$W/pending.out" -j y "$W/sleep.sh" 300)
HELD=$(sub -h -N sample-held -o "$W/held.out" -j y "$W/ok.sh")
wait_state "$RUN" '^r$' 60; sleep 2
cap qstat-running-pending-array.txt qstat
cap qstat-u-all-running-pending-array.txt qstat -u '*'
cap qstat-xml-running-pending-array.xml qstat -xml
cap qstat-xml-u-all-running-pending-array.xml qstat -xml -u '*'
cap qstat-j-running.txt qstat -j "$RUN"
cap qstat-j-running.xml qstat -j "$RUN" -xml
cap qstat-j-array.txt qstat -j "$ARR"
cap qstat-j-pending.txt qstat -j "$PEND"
cap qstat-j-held.txt qstat -j "$HELD"
cap qstat-j-several.txt qstat -j "$RUN,$PEND"
cap qdel-running.txt qdel "$RUN"
cap qdel-pending.txt qdel "$PEND"
cap qdel-array-task.txt qdel "$ARR" -t 3
cap qdel-array.txt qdel "$ARR"
cap qdel-held.txt qdel "$HELD"
wait_acct "$RUN" 60
cap qacct-j-qdel-running.txt qacct -j "$RUN"
wait_acct "$ARR" 60
cap qacct-j-qdel-array.txt qacct -j "$ARR"
sleep 2
cap qacct-j-qdel-pending.txt qacct -j "$PEND"

# ---- finished jobs
DONE=$(sub -N sample-done -o "$W/done.out" -j y "$W/ok.sh")
E3=$(sub -N sample-exit3 -o "$W/exit3.out" -j y "$W/exit3.sh")
HRT=$(sub -N sample-h_rt -l h_rt=0:0:5 -o "$W/h_rt.out" -j y "$W/sleep.sh" 60)
MEM=$(sub -N sample-h_vmem -l h_vmem=200M -o "$W/h_vmem.out" -j y "$W/eat.sh")
AOK=$(sub -N sample-array-done -t 1-2 -o "$W" -j y "$W/ok.sh")
for id in "$DONE" "$E3" "$MEM" "$AOK" "$HRT"; do wait_acct "$id" 90; done
cap qacct-j-completed.txt qacct -j "$DONE"
cap qacct-j-exit3.txt qacct -j "$E3"
cap qacct-j-h_rt-killed.txt qacct -j "$HRT"
cap qacct-j-h_vmem-exceeded.txt qacct -j "$MEM"
cp "$W/h_vmem.out" job-output-h_vmem-exceeded.txt
cap qacct-j-array-completed.txt qacct -j "$AOK"
cp "$W/done.out" job-output-completed.txt
cap qstat-j-finished.txt qstat -j "$DONE"
cap qdel-finished.txt qdel "$DONE"
cap qdel-unknown.txt qdel 999999
cap qstat-j-unknown.txt qstat -j 999999
cap qacct-j-unknown.txt qacct -j 999999
cap qstat-empty.txt qstat
cap qstat-xml-empty.xml qstat -xml
cap qsub-unknown-queue.txt qsub -terse -q nosuch.q "$W/ok.sh"
cap qsub-missing-script.txt qsub -terse "$W/no-such-script.sh"
cap qstat-f.txt qstat -f
cap qstat-help.txt qstat -help
rm -rf "$W"
