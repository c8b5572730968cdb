# A PBS (Torque dialect) cluster on this machine: SchedMD's Torque-compatible qsub/qstat/qdel over the
# real Slurm cluster "main" that slurm.sh brings up (sourced by up/down/status; see lib.sh). Debian 12
# has no OpenPBS or Torque server; `slurm-wlm-torque` is the PBS front end it has.
#
# slurm-wlm-torque conflicts with gridengine-client (sge.sh), so it is not installed: its .deb is
# fetched once into $CACHE and unpacked into the private prefix $PBS_DIR/root. Its qsub runs the
# sbatch/salloc/srun that lie beside it ($FindBin::Bin), so those are symlinked into that prefix.
# $PBS_BIN holds the commands to put first on PATH for PBS (and only for PBS: its qsub/qstat/qdel
# would shadow SGE's): small wrappers that default SLURM_CONF to main's slurm.conf and run the
# unpacked Perl scripts, whose Slurm/Slurmdb modules come from Debian's libslurm(db)-perl.
#
# PBS_* variables in jobs come from SchedMD's SPANK plugin spank_pbs.so, listed in
# $STATE/slurm/main/plugstack.conf: Slurm reads plugstack.conf from the directory of slurm.conf when
# slurm.conf sets no PlugStackConfig (slurm.sh's does not), and slurmstepd reads it at each job
# start, so neither slurm.conf nor slurmd has to change. No daemons of its own: `down` only takes
# the plugin and the profile away; Slurm main stays up (slurm.sh owns it).

PBS_DIR=$STATE/pbs
PBS_ROOT=$STATE/pbs/root
PBS_BIN=$STATE/pbs/bin
PBS_SLURM_CONF=$STATE/slurm/main/slurm.conf
PBS_PLUGSTACK=$STATE/slurm/main/plugstack.conf
PBS_SPANK=/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_pbs.so
# The commands of slurm-wlm-torque we put on PATH (qalter is left out: it runs a hard-coded
# /usr/slurm/bin/scontrol that does not exist).
PBS_COMMANDS="qsub qstat qdel qhold qrls qrerun pbsnodes generate_pbs_nodefile"

# _pbs CMD ARGS...: run one of our PBS commands as the caller, with main's slurm.conf. Never run a
# Slurm client without SLURM_CONF here: with no configuration it looks for its controller with a
# DNS SRV query, which must not leave this machine.
_pbs() { local c=$1; shift; SLURM_CONF=$PBS_SLURM_CONF timeout 30 "$PBS_BIN/$c" "$@"; }

# _pbs_write FILE MODE < content: replace FILE only when its content changes; 0 when it changed.
_pbs_write() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat > "$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
    mv "$tmp" "$file"
    return 0
}

# The version of slurm-wlm-torque that matches the installed Slurm (its Perl API must match libslurm).
_pbs_version() { dpkg-query -W -f='${Version}' slurm-client 2>/dev/null; }

# _pbs_deb: path of the cached .deb of slurm-wlm-torque at the installed Slurm's version; fetch it once.
_pbs_deb() {
    local ver deb tmp
    ver=$(_pbs_version)
    [ -n "$ver" ] || die "pbs: slurm-client is not installed (run tests/clusters/up slurm first)"
    deb=$CACHE/slurm-wlm-torque_${ver//:/%3a}_all.deb
    if [ ! -s "$deb" ]; then
        mkdir -p "$CACHE"
        # apt downloads as the unprivileged _apt user: give it a directory of its own.
        tmp=$(mktemp -d)
        chown _apt "$tmp" 2>/dev/null || true
        log "pbs: downloading slurm-wlm-torque $ver into $CACHE"
        (
            flock 9
            cd "$tmp" || exit 1
            # Package lists that are missing or older than the installed Slurm: update them once.
            apt-get download -qq "slurm-wlm-torque=$ver" >"$STATE/log/pbs-download.log" 2>&1 \
                || { apt-get update -qq -o DPkg::Lock::Timeout=300 >>"$STATE/log/pbs-download.log" 2>&1 \
                     && apt-get download -qq "slurm-wlm-torque=$ver" >>"$STATE/log/pbs-download.log" 2>&1; }
        ) 9>"$STATE/apt.lock" || { rm -rf "$tmp"; die "pbs: apt-get download slurm-wlm-torque=$ver failed (see $STATE/log/pbs-download.log)"; }
        mv "$tmp"/slurm-wlm-torque_*.deb "$deb" || { rm -rf "$tmp"; die "pbs: no .deb after apt-get download"; }
        rm -rf "$tmp"
    fi
    echo "$deb"
}

# _pbs_prefix: the unpacked package (redone when the .deb changes) and the sbatch & co. beside its qsub.
_pbs_prefix() {
    local deb c
    deb=$(_pbs_deb)
    if [ ! -x "$PBS_ROOT/usr/bin/qsub" ] || [ "$(cat "$PBS_DIR/unpacked-from" 2>/dev/null)" != "$deb" ]; then
        rm -rf "$PBS_ROOT"
        mkdir -p "$PBS_ROOT"
        dpkg-deb -x "$deb" "$PBS_ROOT" || die "pbs: dpkg-deb -x $deb failed"
        echo "$deb" > "$PBS_DIR/unpacked-from"
    fi
    for c in sbatch srun salloc squeue scontrol scancel sinfo; do
        ln -sfn "/usr/bin/$c" "$PBS_ROOT/usr/bin/$c"
    done
    mkdir -p "$PBS_BIN"
    for c in $PBS_COMMANDS; do
        _pbs_write "$PBS_BIN/$c" 0755 <<EOF || true
#!/bin/sh
# Written by tests/clusters/pbs.sh: Torque-style $c of the test cluster (slurm-wlm-torque over Slurm
# "main"). Without SLURM_CONF, Slurm would look for a controller with a DNS SRV query: default it.
SLURM_CONF=\${SLURM_CONF:-$PBS_SLURM_CONF}
export SLURM_CONF
exec "$PBS_ROOT/usr/bin/$c" "\$@"
EOF
    done
    chmod -R a+rX "$PBS_DIR"
    # The Perl scripts load Slurm.pm/Slurmdb.pm from Debian's perl path: check they compile here.
    for c in qsub qstat qdel pbsnodes; do
        SLURM_CONF=$PBS_SLURM_CONF perl -c "$PBS_ROOT/usr/bin/$c" >/dev/null 2>"$STATE/log/pbs-perl-check.log" \
            || die "pbs: $PBS_ROOT/usr/bin/$c does not compile (see $STATE/log/pbs-perl-check.log)"
    done
}

# _pbs_plugstack: spank_pbs.so for the jobs of Slurm main; 0 when the file changed.
_pbs_plugstack() {
    [ -f "$PBS_SPANK" ] || die "pbs: $PBS_SPANK missing (package slurm-wlm-basic-plugins)"
    grep -qi '^[[:space:]]*PlugStackConfig' "$PBS_SLURM_CONF" \
        && die "pbs: $PBS_SLURM_CONF sets PlugStackConfig; pbs.sh expects the default ($PBS_PLUGSTACK)"
    _pbs_write "$PBS_PLUGSTACK" 0644 <<EOF
# Written by tests/clusters/pbs.sh: SchedMD's PBS plugin gives Slurm main's jobs PBS_JOBID,
# PBS_JOBNAME, PBS_O_WORKDIR, PBS_ARRAY_INDEX... Slurm reads this file because it lies beside
# slurm.conf (no PlugStackConfig there); slurmstepd reads it at every job start.
optional $PBS_SPANK
EOF
}

# ---------------------------------------------------------------- smoke test

# _pbs_state ID: the one-letter Torque state of a job from `qstat ID` (empty once Slurm forgot it).
_pbs_state() { _pbs qstat "$1" 2>/dev/null | awk -v id="$1" '$1 == id {print $5}'; }

# _pbs_done ID: qstat shows the job C (completed, failed or cancelled).
_pbs_done() { [ "$(_pbs_state "$1")" = C ]; }

_pbs_smoke() {
    local out="$PBS_DIR/smoke" id f i user
    mkdir -p "$out"; chmod 1777 "$out"
    rm -f "$out"/*.out "$out"/*.err
    cat > "$out/job.sh" <<'EOF'
#!/bin/sh
#PBS -N pbs-smoke
#PBS -l nodes=1:ppn=1,walltime=00:01:00
echo "ok $(id -un) PBS_JOBID=$PBS_JOBID PBS_JOBNAME=$PBS_JOBNAME PBS_ARRAYID=$PBS_ARRAYID PBS_ARRAY_INDEX=$PBS_ARRAY_INDEX"
EOF
    chmod 755 "$out/job.sh"

    # One job as root and one as the test user (a non-login shell with only PATH set): a bare id,
    # qstat -f knows it, its output names it in PBS_JOBID.
    for user in root "$TEST_USER"; do
        id=$(cd "$out" && runuser -u "$user" -- env -u SLURM_CONF PATH="$PBS_BIN:/usr/bin:/bin" \
            timeout 30 qsub -o "$out/single-$user.out" -e "$out/single-$user.err" "$out/job.sh" 2>&1) \
            || die "pbs: qsub as $user failed: $id"
        [[ $id =~ ^[0-9]+$ ]] || die "pbs: qsub as $user printed '$id', not a job id"
        _pbs qstat -f "$id" 2>&1 | grep -q "^Job Id:[[:space:]]*$id\$" \
            || die "pbs: qstat -f $id does not show the job: $(_pbs qstat -f "$id" 2>&1)"
        wait_for 60 _pbs_done "$id" || die "pbs: job $id not done after 60s (state '$(_pbs_state "$id")')"
        wait_for 10 grep -q "^ok $user PBS_JOBID=$id PBS_JOBNAME=pbs-smoke " "$out/single-$user.out" \
            || die "pbs: job $id output lacks PBS_JOBID=$id (is $PBS_PLUGSTACK read?): $(cat "$out/single-$user.out" 2>&1)"
    done

    # An array job: two tasks, each with its index.
    id=$(cd "$out" && _pbs qsub -t 1-2 -o "$out/array-%a.out" -e "$out/array-%a.err" "$out/job.sh" 2>&1) \
        || die "pbs: qsub -t 1-2 failed: $id"
    [[ $id =~ ^[0-9]+$ ]] || die "pbs: qsub -t 1-2 printed '$id', not a job id"
    for i in 1 2; do
        wait_for 60 grep -q "^ok root .*PBS_ARRAY_INDEX=$i\$" "$out/array-$i.out" \
            || die "pbs: array task $i of $id wrote: $(cat "$out/array-$i.out" 2>&1)"
    done

    # qdel of a job that waits (held, so it can never start in between).
    id=$(cd "$out" && _pbs qsub -h -o "$out/held.out" -e "$out/held.err" "$out/job.sh" 2>&1) \
        || die "pbs: qsub -h failed: $id"
    _pbs qdel "$id" >/dev/null 2>&1 || die "pbs: qdel $id failed"
    wait_for 30 _pbs_done "$id" || die "pbs: job $id still '$(_pbs_state "$id")' 30s after qdel"
    f=$(SLURM_CONF=$PBS_SLURM_CONF scontrol show job -o "$id" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p')
    [ "$f" = CANCELLED ] || die "pbs: job $id is '$f' after qdel, expected CANCELLED"
    rm -f "$out"/*.out "$out"/*.err
}

# ---------------------------------------------------------------- contract

pbs_up() {
    local t0=$SECONDS fresh=""
    [ -f "$PBS_SLURM_CONF" ] || die "pbs: $PBS_SLURM_CONF missing: bring up slurm first (tests/clusters/up slurm pbs)"
    SLURM_CONF=$PBS_SLURM_CONF timeout 20 scontrol ping >/dev/null 2>&1 \
        || die "pbs: Slurm main does not answer: bring up slurm first (tests/clusters/up slurm pbs)"
    ensure_packages libslurm-perl libslurmdb-perl libswitch-perl slurm-wlm-basic-plugins
    ensure_test_user
    mkdir -p "$PBS_DIR" "$STATE/log" "$STATE/jobs"
    chmod 0755 "$PBS_DIR"
    [ -x "$PBS_BIN/qsub" ] || fresh=1
    _pbs_prefix
    _pbs_plugstack && fresh=1
    # A smoke round when anything was (re)made now or the last round did not pass.
    [ -n "$fresh" ] && rm -f "$PBS_DIR/smoke.passed"
    if [ ! -f "$PBS_DIR/smoke.passed" ]; then
        _pbs_smoke
        touch "$PBS_DIR/smoke.passed"
    fi

    mkdir -p "$STATE/jobs/pbs"; chmod 0711 "$STATE/jobs/pbs"
    write_profile pbs <<EOF
[profiles.pbs]
backend = "pbs"
workdir = "$STATE/jobs/pbs"
pbs_path = "$PBS_BIN"
EOF
    log "pbs: up in $((SECONDS - t0))s (PATH=$PBS_BIN:\$PATH SLURM_CONF=$PBS_SLURM_CONF)"
}

pbs_down() {
    rm -f "$PBS_PLUGSTACK" "$PBS_DIR/smoke.passed"
    remove_profiles pbs
    log "pbs: down (PBS_* plugin off for Slurm main; kept $PBS_DIR and $CACHE; Slurm main untouched)"
}

pbs_status() {
    local c missing="" nodes
    for c in $PBS_COMMANDS; do [ -x "$PBS_BIN/$c" ] || missing="$missing $c"; done
    [ -f "$PBS_PLUGSTACK" ] || missing="$missing plugstack.conf"
    if [ -n "$missing" ]; then
        echo "pbs: down (missing:$missing)"
        return 1
    fi
    if ! nodes=$(_pbs pbsnodes -a 2>/dev/null | awk '/^[^ \t]/ {n=$1} /state =/ {printf "%s:%s ", n, $3}'); then
        echo "pbs: down (pbsnodes fails: Slurm main does not answer)"
        return 1
    fi
    [ -n "$nodes" ] || { echo "pbs: down (pbsnodes shows no nodes)"; return 1; }
    echo "pbs: up (${nodes% }) PATH=$PBS_BIN:\$PATH SLURM_CONF=$PBS_SLURM_CONF"
}
