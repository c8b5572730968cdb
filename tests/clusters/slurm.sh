# Three real Slurm 22.05 clusters side by side on this machine (sourced by up/down/status; see lib.sh).
#
#   main    munged + slurmdbd (MariaDB) + slurmctld + slurmd: plain `sacct` works.
#   noacct  slurmctld + slurmd, accounting off: `sacct` fails, squeue/scontrol are the only source.
#   multi   slurmctld + 3 slurmd (n1..n3) on this host, accounting off: multi-node jobs.
#
# Each cluster lives in $STATE/slurm/<name>/ (slurm.conf, state/, spool/) and is selected with
# SLURM_CONF=$STATE/slurm/<name>/slurm.conf. One munged serves all three. Ports: MariaDB 16806 on
# 127.0.0.1 only; slurmdbd 16819; slurmctld 16817/16827/16837; slurmd 16818/16828/16841-16843 (the
# SLURM_* settings below). Slurm 22.05 daemons bind the wildcard address (no option to bind loopback),
# but every address they are given, and so every connection they make, is 127.0.0.1.

SLURM_CLUSTERS="main noacct multi"
SLURM_DB_PORT=16806
SLURM_DBD_PORT=16819
# name: slurmctld port, slurmd port(s)
SLURM_MAIN_CTLD_PORT=16817   SLURM_MAIN_SLURMD_PORT=16818
SLURM_NOACCT_CTLD_PORT=16827 SLURM_NOACCT_SLURMD_PORT=16828
SLURM_MULTI_CTLD_PORT=16837  SLURM_MULTI_SLURMD_PORTS="16841 16842 16843"
SLURM_HOST=$(hostname -s)
SLURM_NPROC=$(nproc)

_slurm_dir() { echo "$STATE/slurm/$1"; }
_slurm_conf() { echo "$STATE/slurm/$1/slurm.conf"; }

# The node names of one cluster.
_slurm_nodes() {
    case $1 in
        main) echo "$SLURM_HOST" ;;
        noacct) echo "na1" ;;
        multi) echo "n1 n2 n3" ;;
    esac
}

# _slurm_alive NAME COMM: the pid file $STATE/run/NAME.pid names a live process whose command is COMM.
# Stricter than daemon_alive: after a reboot a stale pid may belong to some unrelated process, and it
# also works for a non-root caller (status).
_slurm_alive() {
    local pidfile="$STATE/run/$1.pid" pid comm
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$2" ] && _slurm_pid_running "$pid"
}

# _slurm_pid_running PID: the process exists and is not a zombie. Our daemons are reparented to PID 1,
# which here reaps only every couple of seconds, so `kill -0` still succeeds for ~2 s after they exit.
_slurm_pid_running() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# _slurm_start NAME COMM CMD...: start_daemon, after dropping a pid file that names no such daemon.
# Returns 0 when the daemon was started now, 1 when it was running already.
_slurm_start() {
    local name=$1 comm=$2; shift 2
    if _slurm_alive "$name" "$comm"; then return 1; fi
    rm -f "$STATE/run/$name.pid"
    start_daemon "$name" "$@"
    return 0
}

# _slurm_stop NAME COMM [SECONDS]: stop a daemon of ours by pid (only if the pid is still that daemon).
_slurm_stop() {
    local name=$1 comm=$2 limit=${3:-10} pidfile="$STATE/run/$1.pid" pid i
    if ! _slurm_alive "$name" "$comm"; then rm -f "$pidfile"; return 0; fi
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for i in $(seq $((limit * 10))); do _slurm_pid_running "$pid" || break; sleep 0.1; done
    if _slurm_pid_running "$pid"; then
        log "slurm: $name (pid $pid) did not stop in ${limit}s, killing it"
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------- munge

_slurm_munge_up() {
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    if _slurm_alive munged munged; then return 0; fi
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "slurm: a munged not started by us is already serving /run/munge; using it"
        return 0
    fi
    # A munged that died leaves its lock and pid files behind; nothing holds them any more.
    rm -f /run/munge/munged.pid
    _slurm_start munged munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F || true
    wait_for 10 sh -c 'munge -n | unmunge' || die "munged did not come up (see $STATE/log/munged.log)"
}

_slurm_munge_down() { _slurm_stop munged munged 5; }

# ---------------------------------------------------------------- MariaDB + slurmdbd (cluster main)

_slurm_db_dir() { echo "$STATE/mariadb"; }

_slurm_mariadb_up() {
    local db; db=$(_slurm_db_dir)
    mkdir -p "$db/data" "$db/run"
    chown mysql:mysql "$db/data" "$db/run"
    chmod 0750 "$db/data"
    write_if_changed "$db/my.cnf" 0644 <<EOF || true
[mysqld]
datadir = $db/data
socket = $db/run/mysqld.sock
pid-file = $db/run/mysqld.pid
bind-address = 127.0.0.1
port = $SLURM_DB_PORT
skip-name-resolve
log-error = $db/run/mariadbd.err
# small: this machine is shared with the test suite
performance_schema = OFF
innodb_buffer_pool_size = 32M
innodb_log_file_size = 64M
innodb_lock_wait_timeout = 900
key_buffer_size = 4M
max_connections = 40
thread_cache_size = 4
table_open_cache = 400
[client]
socket = $db/run/mysqld.sock
EOF
    if [ ! -d "$db/data/mysql" ]; then
        log "slurm: initialising the MariaDB datadir $db/data"
        mariadb-install-db --defaults-file="$db/my.cnf" --user=mysql --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install-db.log" 2>&1 \
            || die "mariadb-install-db failed (see $STATE/log/mariadb-install-db.log)"
    fi
    if _slurm_start mariadbd mariadbd setpriv --reuid=mysql --regid=mysql --init-groups \
            /usr/sbin/mariadbd --defaults-file="$db/my.cnf"; then
        wait_for 60 mariadb-admin --defaults-file="$db/my.cnf" ping \
            || die "mariadbd did not come up (see $(_slurm_db_dir)/run/mariadbd.err)"
    fi
    # The database and the account slurmdbd uses (over TCP on 127.0.0.1); the password is kept in $STATE.
    local pwfile="$db/slurm.password" pw
    [ -s "$pwfile" ] || { (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pwfile"); }
    pw=$(cat "$pwfile")
    if [ ! -f "$db/.provisioned" ] || ! cmp -s "$pwfile" "$db/.provisioned"; then
        mariadb --defaults-file="$db/my.cnf" -uroot <<EOF || die "could not create slurm_acct_db in MariaDB"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
        cp "$pwfile" "$db/.provisioned"; chmod 0600 "$db/.provisioned"
    fi
}

_slurm_dbd_conf() {
    local dir; dir=$(_slurm_dir main)
    write_if_changed "$dir/slurmdbd.conf" 0600 <<EOF
# Written by tests/clusters/slurm.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$SLURM_DBD_PORT
SlurmUser=root
DebugLevel=info
PidFile=$dir/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$SLURM_DB_PORT
StorageUser=slurm
StoragePass=$(cat "$(_slurm_db_dir)/slurm.password")
StorageLoc=slurm_acct_db
EOF
}

# ---------------------------------------------------------------- slurm.conf

# _slurm_write_conf NAME: write the cluster's slurm.conf; 0 when it changed.
_slurm_write_conf() {
    local name=$1 dir ctld_port nodes_line acct depend=""
    dir=$(_slurm_dir "$name")
    # Only main cancels jobs with failed dependencies by itself; the others behave like most
    # sites, where clustrix must ask for it (sbatch --kill-on-invalid-dep).
    [ "$name" = main ] && depend="DependencyParameters=kill_invalid_depend"
    # multi forgets finished jobs within a minute or so (the purge runs about every 60 s), as
    # busy sites do: clients must resolve vanished jobs from the runner's own record.
    local min_job_age=300
    [ "$name" = multi ] && min_job_age=2
    # main enforces memory as sites do, with cgroups (cgroup.conf: ConstrainRAMSpace): a job over
    # its memory is killed by the kernel at the limit and ends OUT_OF_MEMORY. noacct and multi keep
    # the sampling OverMemoryKill (every 2 s): several slurmds of one host would share cgroup paths.
    local proctrack=proctrack/linuxproc task=task/none over_memory=JobAcctGatherParams=OverMemoryKill cgroup_changed=0
    if [ "$name" = main ]; then
        # slurmctld refuses both at once ("two incompatible memory enforcement mechanisms").
        proctrack=proctrack/cgroup task=task/cgroup over_memory=
        write_if_changed "$dir/cgroup.conf" 0644 <<EOF && cgroup_changed=1
# Written by tests/clusters/slurm.sh: cluster main's memory limits, enforced by the kernel.
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
EOF
    fi
    case $name in
        main)
            ctld_port=$SLURM_MAIN_CTLD_PORT
            nodes_line="SlurmdPort=$SLURM_MAIN_SLURMD_PORT
NodeName=$SLURM_HOST NodeAddr=127.0.0.1 CPUs=$SLURM_NPROC RealMemory=4000 State=UNKNOWN"
            acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$SLURM_DBD_PORT
JobCompType=jobcomp/none" ;;
        noacct)
            ctld_port=$SLURM_NOACCT_CTLD_PORT
            nodes_line="SlurmdPort=$SLURM_NOACCT_SLURMD_PORT
NodeName=na1 NodeHostname=$SLURM_HOST NodeAddr=127.0.0.1 Port=$SLURM_NOACCT_SLURMD_PORT CPUs=$SLURM_NPROC RealMemory=4000 State=UNKNOWN"
            acct="AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none" ;;
        multi)
            local ports; ports=$(echo $SLURM_MULTI_SLURMD_PORTS | tr ' ' ',')
            ctld_port=$SLURM_MULTI_CTLD_PORT
            nodes_line="SlurmdParameters=config_overrides
NodeName=n[1-3] NodeHostname=$SLURM_HOST NodeAddr=127.0.0.1 Port=[$ports] CPUs=4 RealMemory=4000 State=UNKNOWN"
            acct="AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none" ;;
    esac
    local nodes; nodes=$(_slurm_nodes "$name" | tr ' ' ',')
    write_if_changed "$dir/slurm.conf" 0644 <<EOF
# Written by tests/clusters/slurm.sh: cluster "$name" (select it with SLURM_CONF=$dir/slurm.conf)
ClusterName=$name
SlurmctldHost=$SLURM_HOST(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmdLogFile=$STATE/log/slurm-$name-node-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=$proctrack
TaskPlugin=$task
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MinJobAge=$min_job_age
KillWait=5
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
$over_memory
$depend
$acct
$nodes_line
PartitionName=debug Nodes=$nodes Default=YES MaxTime=1:00:00 State=UP
PartitionName=long Nodes=$nodes MaxTime=1-00:00:00 State=UP
EOF
    [ $? = 0 ] || [ "$cgroup_changed" = 1 ]
}

# ---------------------------------------------------------------- helpers that talk to a cluster

_slurm_cmd() { local name=$1; shift; SLURM_CONF=$(_slurm_conf "$name") timeout 20 "$@"; }

# Node states of a cluster, "n1:idle n2:idle ...", empty when slurmctld does not answer.
_slurm_node_states() {
    { _slurm_cmd "$1" sinfo -h -N -o '%N:%T' 2>/dev/null || true; } | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# Every node of the cluster responds and can take jobs (idle, or busy with the test suite's jobs).
_slurm_all_usable() {
    local states n
    states=$(_slurm_node_states "$1")
    for n in $(_slurm_nodes "$1"); do
        case " $states " in
            *" $n:idle "*|*" $n:mixed "*|*" $n:allocated "*|*" $n:completing "*) ;;
            *) return 1 ;;
        esac
    done
}

# Put nodes that a test left drained or down (e.g. "Kill task failed") back into service.
_slurm_resume_nodes() {
    local name=$1 entry
    for entry in $(_slurm_node_states "$name"); do
        case ${entry#*:} in
            drain*|down*|fail*)
                log "slurm $name: node ${entry%%:*} is ${entry#*:}, resuming it"
                _slurm_cmd "$name" scontrol update NodeName="${entry%%:*}" State=RESUME >/dev/null 2>&1 || true ;;
        esac
    done
}

# _slurm_job_field NAME JOBID FIELD: one Key=Value field of `scontrol show job -o`.
_slurm_job_field() {
    _slurm_cmd "$1" scontrol show job -o "$2" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$3=//p" | head -1
}

# _slurm_wait_job NAME JOBID SECONDS: poll until the job has left PENDING/RUNNING/...; print its state.
_slurm_wait_job() {
    local name=$1 id=$2 limit=$3 i st=""
    for i in $(seq $((limit * 5))); do
        st=$(_slurm_job_field "$name" "$id" JobState)
        case $st in
            PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|"") sleep 0.2 ;;
            *) break ;;
        esac
    done
    echo "$st"
}

# _slurm_smoke NAME: one trivial batch job as root and one as $TEST_USER, both must be COMPLETED 0:0.
_slurm_smoke() {
    local name=$1 conf out id st ec user
    conf=$(_slurm_conf "$name")
    out=$(_slurm_dir "$name")/smoke
    mkdir -p "$out"; chmod 1777 "$out"
    for user in root "$TEST_USER"; do
        id=$(runuser -u "$user" -- env SLURM_CONF="$conf" timeout 20 sbatch --parsable -J smoke-$user \
            -D "$out" -o "$out/smoke-%j.out" -t 1 --wrap 'echo ok $(id -un) $SLURMD_NODENAME') \
            || die "slurm $name: sbatch as $user failed"
        id=${id%%;*}
        st=$(_slurm_wait_job "$name" "$id" 60)
        ec=$(_slurm_job_field "$name" "$id" ExitCode)
        [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] \
            || die "slurm $name: smoke job $id as $user ended '$st' exit '$ec' (see $out/smoke-$id.out)"
        grep -q "^ok $user " "$out/smoke-$id.out" || die "slurm $name: smoke job $id output is wrong"
        if [ "$name" = main ]; then
            # slurmctld sends the job's end to slurmdbd asynchronously: allow a few seconds.
            wait_for 15 sh -c "SLURM_CONF='$conf' sacct -n -X -P -j $id -o State,ExitCode | grep -qx 'COMPLETED|0:0'" \
                || die "slurm main: sacct -j $id does not show COMPLETED|0:0: $(SLURM_CONF=$conf sacct -n -X -P -j "$id" -o State,ExitCode 2>&1)"
        fi
    done
    if [ "$name" = multi ]; then
        local got
        got=$(_slurm_cmd multi srun -N3 -n3 -t 1 sh -c 'echo $SLURMD_NODENAME' 2>&1 | sort | tr '\n' ' ')
        [ "$got" = "n1 n2 n3 " ] || die "slurm multi: srun -N3 gave '$got', expected one task on each of n1 n2 n3"
    fi
    rm -f "$out"/smoke-*.out
}

# ---------------------------------------------------------------- one cluster

# _slurm_cluster_up NAME CONF_CHANGED: start slurmctld and the slurmds; 0 when anything was started.
_slurm_cluster_up() {
    local name=$1 changed=$2 dir n started=1
    dir=$(_slurm_dir "$name")
    if [ "$changed" = 1 ]; then _slurm_cluster_stop "$name"; fi
    mkdir -p "$dir/state" "$dir/spool"
    if _slurm_start "slurm-$name-slurmctld" slurmctld /usr/sbin/slurmctld -D -f "$dir/slurm.conf"; then
        started=0
    fi
    wait_for 30 env SLURM_CONF="$dir/slurm.conf" scontrol ping \
        || die "slurm $name: slurmctld does not answer (see $STATE/log/slurm-$name-slurmctld.log)"
    for n in $(_slurm_nodes "$name"); do
        mkdir -p "$dir/spool/$n"
        if _slurm_start "slurm-$name-slurmd-$n" slurmd /usr/sbin/slurmd -D -N "$n" -f "$dir/slurm.conf"; then
            started=0
        fi
    done
    return $started
}

_slurm_cluster_stop() {
    local name=$1 n
    for n in $(_slurm_nodes "$name"); do _slurm_stop "slurm-$name-slurmd-$n" slurmd 15; done
    _slurm_stop "slurm-$name-slurmctld" slurmctld 15
}

# ---------------------------------------------------------------- contract

slurm_up() {
    local t0=$SECONDS name changed dbd_changed fresh=""
    ensure_packages slurmctld slurmd slurm-client munge slurmdbd mariadb-server mariadb-client
    ensure_test_user
    mkdir -p "$STATE" "$STATE/log" "$STATE/run" "$STATE/jobs"
    chmod 0755 "$STATE" "$STATE/jobs"
    mkdir -p "$STATE/slurm"; chmod 0755 "$STATE/slurm"
    for name in $SLURM_CLUSTERS; do mkdir -p "$(_slurm_dir "$name")"; chmod 0755 "$(_slurm_dir "$name")"; done

    _slurm_munge_up

    # main's accounting: MariaDB, then slurmdbd, then the cluster, account and users in the database.
    _slurm_mariadb_up
    dbd_changed=0; _slurm_dbd_conf && dbd_changed=1
    [ "$dbd_changed" = 1 ] && _slurm_stop slurmdbd slurmdbd 15
    local main_conf; main_conf=$(_slurm_conf main)
    changed=0; _slurm_write_conf main && changed=1
    if _slurm_start slurmdbd slurmdbd env SLURM_CONF="$main_conf" /usr/sbin/slurmdbd -D; then
        wait_for 30 env SLURM_CONF="$main_conf" sacctmgr -n list cluster \
            || die "slurmdbd does not answer (see $STATE/log/slurmdbd.log)"
    fi
    if ! SLURM_CONF=$main_conf sacctmgr -n -P list cluster format=Cluster 2>/dev/null | grep -qx main; then
        SLURM_CONF=$main_conf sacctmgr -i add cluster main >/dev/null || die "sacctmgr add cluster main failed"
    fi
    if ! SLURM_CONF=$main_conf sacctmgr -n -P list account format=Account 2>/dev/null | grep -qx clustrix; then
        SLURM_CONF=$main_conf sacctmgr -i add account clustrix Cluster=main Description=tests Organization=tests \
            >/dev/null || die "sacctmgr add account failed"
    fi
    local u
    for u in root "$TEST_USER"; do
        if ! SLURM_CONF=$main_conf sacctmgr -n -P list assoc cluster=main user="$u" format=Account 2>/dev/null | grep -q .; then
            SLURM_CONF=$main_conf sacctmgr -i add user "$u" Account=clustrix Cluster=main >/dev/null \
                || die "sacctmgr add user $u failed"
        fi
    done

    for name in $SLURM_CLUSTERS; do
        if [ "$name" != main ]; then changed=0; _slurm_write_conf "$name" && changed=1; fi
        if _slurm_cluster_up "$name" "$changed"; then fresh="$fresh $name"; fi
    done

    for name in $SLURM_CLUSTERS; do
        wait_for 3 _slurm_all_usable "$name" || _slurm_resume_nodes "$name"
        wait_for 60 _slurm_all_usable "$name" \
            || die "slurm $name: nodes not usable after 60s: $(_slurm_node_states "$name")"
    done
    # A smoke job on each cluster whose daemons were (re)started now; a warm `up` only checks the nodes.
    for name in $fresh; do _slurm_smoke "$name"; done

    local suffix
    for name in $SLURM_CLUSTERS; do
        case $name in main) suffix="" ;; *) suffix="-$name" ;; esac
        mkdir -p "$STATE/jobs/slurm$suffix"; chmod 0711 "$STATE/jobs/slurm$suffix"
        write_profile "slurm$suffix" <<EOF
[profiles.slurm$suffix]
backend = "slurm"
slurm_conf = "$(_slurm_conf "$name")"
partition = "debug"
workdir = "$STATE/jobs/slurm$suffix"
EOF
    done
    log "slurm: main, noacct, multi up in $((SECONDS - t0))s${fresh:+ (started:$fresh)}"
}

slurm_down() {
    local name
    for name in $SLURM_CLUSTERS; do _slurm_cluster_stop "$name"; done
    _slurm_stop slurmdbd slurmdbd 15
    _slurm_stop mariadbd mariadbd 60
    _slurm_munge_down
    remove_profiles slurm slurm-noacct slurm-multi
    log "slurm: down"
}

slurm_status() {
    local name rc=0 states n missing
    for name in $SLURM_CLUSTERS; do
        missing=""
        _slurm_alive "slurm-$name-slurmctld" slurmctld || missing="$missing slurmctld"
        for n in $(_slurm_nodes "$name"); do
            _slurm_alive "slurm-$name-slurmd-$n" slurmd || missing="$missing slurmd($n)"
        done
        if [ "$name" = main ]; then
            _slurm_alive slurmdbd slurmdbd || missing="$missing slurmdbd"
            _slurm_alive mariadbd mariadbd || missing="$missing mariadbd"
        fi
        states=""
        [ -f "$(_slurm_conf "$name")" ] && states=$(_slurm_node_states "$name")
        if [ -z "$missing" ] && [ -n "$states" ]; then
            echo "slurm $name: up ($states) SLURM_CONF=$(_slurm_conf "$name")"
        elif [ -n "$missing" ]; then
            echo "slurm $name: down (not running:$missing${states:+; nodes $states})"
            rc=1
        else
            echo "slurm $name: down (slurmctld does not answer)"
            rc=1
        fi
    done
    return $rc
}
