# A real Son of Grid Engine 8.1.9 cluster on this machine (sourced by up/down/status; see lib.sh).
#
# Debian's gridengine-master/-exec/-client: one sge_qmaster and one sge_execd on this host, cell
# "default" in /var/lib/gridengine (SGE_ROOT), spool in /var/spool/gridengine (where Debian puts it).
# Queues: all.q (the default the profile names) and short.q (same host, 1 h limit) so tests can
# check queue selection; both take the `smp` PE ($pe_slots) and share the host's nproc slots.
# h_vmem is requestable (an rlimit), not a consumable (see _sge_complex_h_vmem).
#
# Ports: qmaster 16850, execd 16851 (not SGE's 6444/6445; Slurm here uses 16806-16843). SGE 8.1.9 binds
# the wildcard address (there is no option to bind loopback), but the only host it knows is this one,
# which resolves to 127.0.0.1, so every connection it makes is on loopback. The clients find the
# port through /etc/default/gridengine, which Debian's command wrapper (/usr/bin/q*) reads; see
# _sge_client_defaults. The daemons write their pid files to $SGE_RUN (SGE_QMASTER_PIDFILE /
# SGE_EXECD_PIDFILE) and are stopped by those pids only. Logs: the daemons' own "messages" files
# ($SGE_SPOOL/qmaster/messages, $SGE_SPOOL/execd/localhost/messages: execd names its spool dir after
# what 127.0.0.1 resolves to), start-up output in $STATE/log.

SGE_QMASTER_PORT_NUM=16850
SGE_EXECD_PORT_NUM=16851
SGE_ROOT_DIR=/var/lib/gridengine
SGE_CELL_NAME=default
SGE_COMMON=$SGE_ROOT_DIR/$SGE_CELL_NAME/common
SGE_SPOOL=/var/spool/gridengine
SGE_DIR=$STATE/sge
SGE_RUN=$STATE/sge/run
SGE_HOST=$(hostname -s)
SGE_NPROC=$(nproc)

# _sge_env CMD...: run an SGE command with this cluster's settings, whatever the caller's environment.
_sge_env() {
    SGE_ROOT=$SGE_ROOT_DIR SGE_CELL=$SGE_CELL_NAME \
        SGE_QMASTER_PORT=$SGE_QMASTER_PORT_NUM SGE_EXECD_PORT=$SGE_EXECD_PORT_NUM \
        timeout 30 "$@"
}

# _sge_alive NAME COMM: $SGE_RUN/NAME.pid names a live process whose command is COMM. Checking the
# command matters after a reboot, when a stale pid may belong to an unrelated process.
_sge_alive() {
    local pidfile="$SGE_RUN/$1.pid" pid comm st
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$2" ] || return 1
    # Not a zombie: PID 1 here reaps orphans only every few seconds.
    st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# _sge_stop NAME COMM SECONDS: SIGTERM the daemon named by its own pid file, wait, then SIGKILL.
# qmaster needs a few seconds for its controlled shutdown (it flushes its Berkeley DB spool).
_sge_stop() {
    local name=$1 comm=$2 limit=$3 pidfile="$SGE_RUN/$1.pid" pid i
    if ! _sge_alive "$name" "$comm"; then rm -f "$pidfile"; return 0; fi
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for i in $(seq $((limit * 10))); do _sge_alive "$name" "$comm" || break; sleep 0.1; done
    if _sge_alive "$name" "$comm"; then
        log "sge: $name (pid $pid) did not stop in ${limit}s, killing it"
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------- install and host files

_sge_install() {
    # The packages' postinst creates the cell (spool database, default configuration) only when
    # debconf says so; the answers must be there before the first install.
    if ! dpkg-query -W -f='${Status}' gridengine-master 2>/dev/null | grep -q "install ok installed"; then
        debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL_NAME
gridengine-common shared/gridenginemaster string $SGE_HOST
EOF
    fi
    ensure_packages gridengine-master gridengine-exec gridengine-client
    # A machine where the packages were installed without those answers has no cell yet: make it
    # the way the postinst would have.
    if [ ! -e "$SGE_SPOOL/spooldb/sge" ]; then
        log "sge: initialising the cell $SGE_CELL_NAME (spool $SGE_SPOOL/spooldb)"
        install -d -o sgeadmin -g sgeadmin -m 0755 "$SGE_SPOOL/qmaster" "$SGE_SPOOL/qmaster/job_scripts" \
            "$SGE_SPOOL/spooldb" "$SGE_SPOOL/execd" "$SGE_COMMON"
        runuser -u sgeadmin -- /usr/share/gridengine/scripts/init_cluster "$SGE_ROOT_DIR" "$SGE_CELL_NAME" \
            "$SGE_SPOOL/spooldb" sgeadmin >"$STATE/log/sge-init-cluster.log" 2>&1 \
            || die "sge: init_cluster failed (see $STATE/log/sge-init-cluster.log)"
    fi
}

# _sge_host_files: act_qmaster, host_aliases, settings.sh and the clients' port defaults.
_sge_host_files() {
    # qmaster resolves 127.0.0.1 back to "localhost" and then refuses clients whose own name is
    # $SGE_HOST ("client IP resolved to host name localhost. This is not identical to clients host
    # name"). host_aliases makes both names one host without touching /etc/hosts. Read at start-up.
    write_if_changed "$SGE_COMMON/host_aliases" 0644 <<<"$SGE_HOST localhost" || true
    write_if_changed "$SGE_COMMON/act_qmaster" 0644 <<<"$SGE_HOST" || true
    chown sgeadmin:sgeadmin "$SGE_COMMON/host_aliases" "$SGE_COMMON/act_qmaster"
    # What a login shell of an SGE site sources; with non-standard ports a real install puts them here.
    write_if_changed "$SGE_COMMON/settings.sh" 0644 <<EOF || true
SGE_ROOT=$SGE_ROOT_DIR; export SGE_ROOT
SGE_CELL=$SGE_CELL_NAME; export SGE_CELL
SGE_ARCH=\`\$SGE_ROOT/util/arch\`; export SGE_ARCH
SGE_QMASTER_PORT=$SGE_QMASTER_PORT_NUM; export SGE_QMASTER_PORT
SGE_EXECD_PORT=$SGE_EXECD_PORT_NUM; export SGE_EXECD_PORT
EOF
    _sge_client_defaults
}

# _sge_client_defaults: every /usr/bin/q* of Debian is a wrapper that sources /etc/default/gridengine
# (a file the package's postinst writes, not a conffile) before it runs the real binary. Our ports go
# there, so qsub/qstat/qacct work from any shell, root's or the test user's, login or not, with no
# environment; a caller's own SGE_QMASTER_PORT/SGE_EXECD_PORT still wins.
_sge_client_defaults() {
    local f=/etc/default/gridengine tmp
    [ -f "$f" ] || printf 'SGE_ROOT=%s\nSGE_CELL=%s\n' "$SGE_ROOT_DIR" "$SGE_CELL_NAME" > "$f"
    tmp=$(mktemp)
    {
        _sge_without_block < "$f"
        echo "$SGE_BLOCK_BEGIN"
        echo "SGE_QMASTER_PORT=\${SGE_QMASTER_PORT:-$SGE_QMASTER_PORT_NUM}; export SGE_QMASTER_PORT"
        echo "SGE_EXECD_PORT=\${SGE_EXECD_PORT:-$SGE_EXECD_PORT_NUM}; export SGE_EXECD_PORT"
        echo "$SGE_BLOCK_END"
    } > "$tmp"
    # In place (cat, not mv): keep the file's owner and mode.
    cmp -s "$tmp" "$f" || cat "$tmp" > "$f"
    rm -f "$tmp"
}

SGE_BLOCK_BEGIN="# BEGIN clustrix test cluster: ports of its qmaster and execd (tests/clusters/sge.sh)"
SGE_BLOCK_END="# END clustrix test cluster"

# _sge_without_block: stdin without our block (whole lines compared as fixed strings).
_sge_without_block() {
    awk -v b="$SGE_BLOCK_BEGIN" -v e="$SGE_BLOCK_END" '$0 == b {skip=1} !skip {print} $0 == e {skip=0}'
}

# ---------------------------------------------------------------- daemons

_sge_qmaster_up() {
    install -d -o sgeadmin -g sgeadmin -m 0755 "$SGE_RUN"
    _sge_alive qmaster sge_qmaster && return 1
    rm -f "$SGE_RUN/qmaster.pid"
    # sge_qmaster forks into the background itself, then writes its pid file as sgeadmin.
    _sge_env env SGE_QMASTER_PIDFILE="$SGE_RUN/qmaster.pid" /usr/sbin/sge_qmaster \
        >>"$STATE/log/sge-qmaster.log" 2>&1 < /dev/null \
        || die "sge: sge_qmaster did not start (see $STATE/log/sge-qmaster.log, $SGE_SPOOL/qmaster/messages)"
    wait_for 30 _sge_env qconf -sss \
        || die "sge: qmaster does not answer on port $SGE_QMASTER_PORT_NUM (see $SGE_SPOOL/qmaster/messages)"
    return 0
}

_sge_execd_up() {
    _sge_alive execd sge_execd && return 1
    rm -f "$SGE_RUN/execd.pid"
    _sge_env env SGE_EXECD_PIDFILE="$SGE_RUN/execd.pid" /usr/sbin/sge_execd \
        >>"$STATE/log/sge-execd.log" 2>&1 < /dev/null \
        || die "sge: sge_execd did not start (see $STATE/log/sge-execd.log, $SGE_SPOOL/execd/*/messages)"
    wait_for 10 _sge_alive execd sge_execd \
        || die "sge: sge_execd exited (see $STATE/log/sge-execd.log, $SGE_SPOOL/execd/*/messages)"
    return 0
}

# _sge_host_ready: the execd has reported load (qhost's LOAD column is not "-") and
# neither queue instance is in an unknown/alarm/error/disabled state.
_sge_host_ready() {
    local q states
    _sge_env qhost -h "$SGE_HOST" 2>/dev/null | awk -v h="$SGE_HOST" '$1 == h && $7 != "-" {ok=1} END {exit !ok}' \
        || return 1
    for q in all.q short.q; do
        # qstat -f: "all.q@vm  BP  0/0/2  0.01  lx-amd64  [states]"
        states=$(_sge_env qstat -f -q "$q@$SGE_HOST" 2>/dev/null | awk -v q="$q@$SGE_HOST" '$1 == q {print $6}')
        case $states in *[uaEdDsSoc]*) return 1 ;; esac
        _sge_env qstat -f -q "$q@$SGE_HOST" 2>/dev/null | grep -q "^$q@$SGE_HOST " || return 1
    done
}

# _sge_repair_queues: a test may leave a queue instance in error state (a job that SGE could not
# start) or disabled (qmod -d): clear and enable it, as an admin would.
_sge_repair_queues() {
    local q states
    for q in all.q short.q; do
        states=$(_sge_env qstat -f -q "$q@$SGE_HOST" 2>/dev/null | awk -v q="$q@$SGE_HOST" '$1 == q {print $6}')
        case $states in *E*)
            log "sge: $q@$SGE_HOST is in error state ($states), clearing it"
            _sge_env qmod -cq "$q@$SGE_HOST" >/dev/null 2>&1 || true ;;
        esac
        case $states in *d*)
            log "sge: $q@$SGE_HOST is disabled ($states), enabling it"
            _sge_env qmod -e "$q@$SGE_HOST" >/dev/null 2>&1 || true ;;
        esac
    done
}

# ---------------------------------------------------------------- configuration

# _sge_norm: a qconf listing as sorted "key value" lines (continuations joined, comments and the
# version counter dropped, blanks squeezed), so what we want and what qmaster has compare as text.
_sge_norm() {
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' \
        | grep -v -e '^#' -e '^conf_version' -e '^[[:space:]]*$' \
        | awk '{$1=$1; print}' | LC_ALL=C sort
}

# _sge_apply WHAT NAME FILE: make qmaster's object equal FILE; 0 when it had to change it.
#   WHAT: conf (NAME global) | sconf (NAME unused) | queue | pe
_sge_apply() {
    local what=$1 name=$2 file=$3 have want
    want=$(_sge_norm < "$file")
    case $what in
        conf) have=$(_sge_env qconf -sconf "$name" 2>/dev/null | _sge_norm) ;;
        sconf) have=$(_sge_env qconf -ssconf 2>/dev/null | _sge_norm) ;;
        queue) have=$(_sge_env qconf -sq "$name" 2>/dev/null | _sge_norm) ;;
        pe) have=$(_sge_env qconf -sp "$name" 2>/dev/null | _sge_norm) ;;
    esac
    [ "$have" = "$want" ] && return 1
    local out rc=0
    case $what in
        # -Mconf takes the configuration's name from the file's name: it must be called "global".
        conf) out=$(cd "$(dirname "$file")" && _sge_env qconf -Mconf "$(basename "$file")" 2>&1) || rc=$? ;;
        sconf) out=$(_sge_env qconf -Msconf "$file" 2>&1) || rc=$? ;;
        queue)
            if _sge_env qconf -sql 2>/dev/null | grep -qx "$name"; then
                out=$(_sge_env qconf -Mq "$file" 2>&1) || rc=$?
            else
                out=$(_sge_env qconf -Aq "$file" 2>&1) || rc=$?
            fi ;;
        pe)
            if _sge_env qconf -spl 2>/dev/null | grep -qx "$name"; then
                out=$(_sge_env qconf -Mp "$file" 2>&1) || rc=$?
            else
                out=$(_sge_env qconf -Ap "$file" 2>&1) || rc=$?
            fi ;;
    esac
    [ "$rc" = 0 ] || die "sge: qconf could not set $what $name from $file: $out"
    log "sge: set $what $name"
    return 0
}

# The global configuration: Debian's defaults, plus root may submit (the suite runs as root with the
# local transport), accounting flushed at once (qacct -j right after a job ends), load reports every
# 10 s instead of 40 s, and execd kills a job's whole process group. No login shells: a job's shell
# does not read its user's profile, where a stale lock of pyenv's shim rehash (left by a job killed
# during it) made every later job start a minute late.
_sge_conf_global() {
    cat <<EOF
execd_spool_dir              $SGE_SPOOL/execd
mailer                       /bin/true
xterm                        /usr/bin/xterm
load_sensor                  none
prolog                       none
epilog                       none
shell_start_mode             posix_compliant
login_shells                 none
min_uid                      0
min_gid                      0
user_lists                   none
xuser_lists                  none
projects                     none
xprojects                    none
enforce_project              false
enforce_user                 auto
load_report_time             00:00:10
max_unheard                  00:05:00
reschedule_unknown           00:00:00
loglevel                     log_info
administrator_mail           none
set_token_cmd                none
pag_cmd                      none
token_extend_time            none
shepherd_cmd                 none
qmaster_params               none
execd_params                 ENABLE_ADDGRP_KILL=true
reporting_params             accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00
finished_jobs                100
gid_range                    65400-65500
qlogin_command               builtin
qlogin_daemon                builtin
rlogin_command               builtin
rlogin_daemon                builtin
rsh_command                  builtin
rsh_daemon                   builtin
max_aj_instances             2000
max_aj_tasks                 75000
max_u_jobs                   0
max_jobs                     0
auto_user_oticket            0
auto_user_fshare             0
auto_user_default_project    none
auto_user_delete_time        86400
delegated_file_staging       false
reprioritize                 0
jsv_url                      none
jsv_allowed_mod              ac,h,i,e,o,j,M,N,p,w
EOF
}

# The scheduler: a pass every second and right after each submit/finish (default: every 15 s), no
# load adjustments (this machine is busy with other clusters' tests), queues by seq_no so a job
# that names no queue lands in all.q first.
_sge_conf_sched() {
    cat <<EOF
algorithm                         default
schedule_interval                 0:0:1
maxujobs                          0
queue_sort_method                 seqno
job_load_adjustments              NONE
load_adjustment_decay_time        0:0:0
load_formula                      np_load_avg
schedd_job_info                   true
flush_submit_sec                  1
flush_finish_sec                  1
params                            none
reprioritize_interval             0:0:0
halftime                          168
usage_weight_list                 cpu=1.000000,mem=0.000000,io=0.000000
compensation_factor               5.000000
weight_user                       0.250000
weight_project                    0.250000
weight_department                 0.250000
weight_job                        0.250000
weight_tickets_functional         0
weight_tickets_share              0
share_override_tickets            TRUE
share_functional_shares           TRUE
max_functional_jobs_to_schedule   200
report_pjob_tickets               TRUE
max_pending_tasks_per_job         50
halflife_decay_list               none
policy_hierarchy                  OFS
weight_ticket                     0.500000
weight_waiting_time               0.278000
weight_deadline                   3600000.000000
weight_urgency                    0.500000
weight_priority                   0.000000
max_reservation                   0
default_duration                  INFINITY
EOF
}

_sge_conf_pe_smp() {
    cat <<EOF
pe_name            smp
slots              999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     TRUE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
}

# _sge_conf_queue NAME SEQ_NO H_RT: one queue on this host. No load thresholds: a busy machine must
# not put the queue into alarm state. Each queue has nproc slots; the host's complex_values cap the
# two queues together at nproc.
_sge_conf_queue() {
    cat <<EOF
qname                 $1
hostlist              $SGE_HOST
seq_no                $2
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 $SGE_NPROC
tmpdir                /tmp
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  $3
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
}

# _sge_complex_h_vmem: h_vmem requestable (`-l h_vmem=200M`) but not a consumable. SGE enforces it
# as the job's address-space rlimit (per slot: `-pe smp 2 -l h_vmem=300M` gives 600M). Not a
# consumable on purpose: a consumable's default (0) becomes the limit of every job that asks for
# none, and qmaster then kills such jobs within a second ("failed 37: qmaster enforced h_rt, h_cpu,
# or h_vmem limit"); a large default would book the whole machine for each job.
_sge_complex_h_vmem() {
    local cur out
    cur=$(_sge_env qconf -sc | awk '$1 == "h_vmem"')
    # name shortcut type relop requestable consumable default urgency
    [ "$(echo "$cur" | awk '{print $5" "$6" "$7}')" = "YES NO 0" ] && return 1
    _sge_env qconf -sc | awk '$1 == "h_vmem" {$5="YES"; $6="NO"; $7="0"} {print}' > "$SGE_DIR/conf/complexes"
    out=$(_sge_env qconf -Mc "$SGE_DIR/conf/complexes" 2>&1) || die "sge: qconf -Mc failed: $out"
    log "sge: h_vmem requestable, not consumable"
}

# _sge_exec_host: this host as submit, admin and execution host; its slots (nproc) cap the two
# queues together.
_sge_exec_host() {
    local want cur
    want="slots=$SGE_NPROC"
    _sge_env qconf -sh 2>/dev/null | grep -qx "$SGE_HOST" || _sge_env qconf -ah "$SGE_HOST" >/dev/null 2>&1
    _sge_env qconf -ss 2>/dev/null | grep -qx "$SGE_HOST" || _sge_env qconf -as "$SGE_HOST" >/dev/null 2>&1
    if ! _sge_env qconf -sel 2>/dev/null | grep -qx "$SGE_HOST"; then
        cat > "$SGE_DIR/conf/exechost" <<EOF
hostname              $SGE_HOST
load_scaling          NONE
complex_values        $want
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
        _sge_env qconf -Ae "$SGE_DIR/conf/exechost" >/dev/null 2>&1 || die "sge: qconf -Ae $SGE_HOST failed"
        log "sge: added execution host $SGE_HOST"
        return 0
    fi
    cur=$(_sge_env qconf -se "$SGE_HOST" | awk '$1 == "complex_values" {print $2}')
    # qconf prints the list sorted by name; compare as sets all the same.
    if [ "$(echo "$cur" | tr ',' '\n' | sort | tr '\n' ',')" != "$(echo "$want" | tr ',' '\n' | sort | tr '\n' ',')" ]; then
        _sge_env qconf -rattr exechost complex_values "$want" "$SGE_HOST" >/dev/null 2>&1 \
            || die "sge: could not set complex_values of $SGE_HOST"
        log "sge: set complex_values of $SGE_HOST to $want"
    fi
}

_sge_configure() {
    local c="$SGE_DIR/conf"
    mkdir -p "$c"
    _sge_conf_global > "$c/global"
    _sge_conf_sched > "$c/sched"
    _sge_conf_pe_smp > "$c/pe-smp"
    _sge_conf_queue all.q 0 INFINITY > "$c/queue-all.q"
    _sge_conf_queue short.q 10 01:00:00 > "$c/queue-short.q"
    _sge_apply conf global "$c/global" || true
    _sge_apply sconf - "$c/sched" || true
    _sge_complex_h_vmem || true
    _sge_exec_host
    _sge_apply pe smp "$c/pe-smp" || true
    _sge_apply queue all.q "$c/queue-all.q" || true
    _sge_apply queue short.q "$c/queue-short.q" || true
}

# ---------------------------------------------------------------- smoke test

# _sge_wait_acct ID SECONDS: wait until qacct knows the job (all tasks) and print its record.
_sge_wait_acct() {
    local id=$1 limit=$2 i
    for i in $(seq $((limit * 5))); do
        if ! _sge_env qstat -j "$id" >/dev/null 2>&1 && _sge_env qacct -j "$id" >/dev/null 2>&1; then
            _sge_env qacct -j "$id"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# _sge_smoke: a script job as root and one as $TEST_USER, an array job; qacct shows them exit 0.
# The jobs last 2 s, long enough for execd's usage reports, so a limit that kills jobs shows here.
_sge_smoke() {
    local out="$SGE_DIR/smoke" user id acct n ids=() users=()
    mkdir -p "$out"; chmod 1777 "$out"
    rm -f "$out"/*.out
    cat > "$out/job.sh" <<'EOF'
#!/bin/sh
sleep 2
echo "ok $(id -un) $JOB_ID $SGE_TASK_ID $QUEUE $NSLOTS"
EOF
    chmod 755 "$out/job.sh"
    for user in root "$TEST_USER"; do
        # qsub of Debian's client as this user, from a non-login shell with no SGE variables at all.
        id=$(cd "$out" && runuser -u "$user" -- env -u SGE_ROOT -u SGE_CELL -u SGE_QMASTER_PORT \
            timeout 30 qsub -terse -N "smoke-$user" -q all.q -o "$out/smoke-$user.out" -j y "$out/job.sh" 2>&1) \
            || die "sge: qsub as $user failed: $id"
        ids+=("$id"); users+=("$user")
    done
    id=$(cd "$out" && timeout 30 qsub -terse -N smoke-array -t 1-2 -o "$out/smoke-array.\$TASK_ID.out" -j y "$out/job.sh" 2>&1) \
        || die "sge: array qsub failed: $id"
    # -terse prints "ID.1-2:1" for an array.
    local array=${id%%.*}
    for n in 0 1; do
        id=${ids[$n]} user=${users[$n]}
        acct=$(_sge_wait_acct "$id" 60) || die "sge: smoke job $id as $user did not finish in 60s"
        echo "$acct" | grep -qE '^failed +0 *$' || die "sge: smoke job $id as $user: $acct"
        echo "$acct" | grep -qE '^exit_status +0 *$' || die "sge: smoke job $id as $user: $acct"
        grep -q "^ok $user $id undefined all.q 1$" "$out/smoke-$user.out" \
            || die "sge: smoke job $id as $user wrote: $(cat "$out/smoke-$user.out" 2>&1)"
    done
    acct=$(_sge_wait_acct "$array" 60) || die "sge: smoke array job $array did not finish in 60s"
    n=$(echo "$acct" | grep -cE '^exit_status +0 *$')
    [ "$n" = 2 ] || die "sge: smoke array job $array: qacct shows $n of 2 tasks with exit 0: $acct"
    for n in 1 2; do
        grep -q "^ok root $array $n " "$out/smoke-array.$n.out" \
            || die "sge: smoke array task $array.$n wrote: $(cat "$out/smoke-array.$n.out" 2>&1)"
    done
    rm -f "$out"/*.out
}

# ---------------------------------------------------------------- contract

sge_up() {
    local t0=$SECONDS started=""
    mkdir -p "$STATE" "$STATE/log" "$SGE_DIR/conf" "$STATE/jobs"
    chmod 0755 "$STATE" "$STATE/jobs" "$SGE_DIR"
    _sge_install
    ensure_test_user
    _sge_host_files

    _sge_qmaster_up && started="$started qmaster"
    _sge_configure
    _sge_execd_up && started="$started execd"
    _sge_repair_queues
    wait_for 60 _sge_host_ready || die "sge: host $SGE_HOST not ready after 60s: $(_sge_env qstat -f 2>&1 | tr '\n' ' ')"
    # A smoke round when a daemon was (re)started now or the last round did not pass; a warm `up`
    # only checks the queues.
    [ -n "$started" ] && rm -f "$SGE_DIR/smoke.passed"
    if [ ! -f "$SGE_DIR/smoke.passed" ]; then
        _sge_smoke
        touch "$SGE_DIR/smoke.passed"
    fi

    mkdir -p "$STATE/jobs/sge"; chmod 0711 "$STATE/jobs/sge"
    write_profile sge <<EOF
[profiles.sge]
backend = "sge"
workdir = "$STATE/jobs/sge"
queue = "all.q"
EOF
    log "sge: up in $((SECONDS - t0))s${started:+ (started:$started)} (qmaster port $SGE_QMASTER_PORT_NUM, execd port $SGE_EXECD_PORT_NUM)"
}

sge_down() {
    # The execd first, so qmaster sees it go; then qmaster (controlled shutdown).
    _sge_stop execd sge_execd 15
    _sge_stop qmaster sge_qmaster 40
    remove_profiles sge
    log "sge: down (kept the cell in $SGE_COMMON, spool in $SGE_SPOOL, $SGE_DIR)"
}

sge_status() {
    local rc=0 missing="" q states line
    _sge_alive qmaster sge_qmaster || missing="$missing sge_qmaster"
    _sge_alive execd sge_execd || missing="$missing sge_execd"
    if [ -n "$missing" ]; then
        echo "sge: down (not running:$missing)"
        return 1
    fi
    if ! _sge_env qconf -sss >/dev/null 2>&1; then
        echo "sge: down (qmaster does not answer on port $SGE_QMASTER_PORT_NUM)"
        return 1
    fi
    line=""
    for q in all.q short.q; do
        states=$(_sge_env qstat -f -q "$q@$SGE_HOST" 2>/dev/null | awk -v q="$q@$SGE_HOST" '$1 == q {print $3 ($6 ? " " $6 : "")}')
        [ -n "$states" ] || { states="missing"; rc=1; }
        case $states in *" "*[uaEdDsSoc]*) rc=1 ;; esac
        line="$line $q@$SGE_HOST:$states"
    done
    if [ "$rc" = 0 ]; then
        echo "sge: up (qmaster pid $(cat "$SGE_RUN/qmaster.pid"), execd pid $(cat "$SGE_RUN/execd.pid"), port $SGE_QMASTER_PORT_NUM;$line)"
    else
        echo "sge: degraded ($line)"
    fi
    return $rc
}
