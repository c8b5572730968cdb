# Shared helpers for the real test clusters: state dir, packages, daemons by pid file, profiles.
# Sourced by `up`, `down`, `status` and by each <kind>.sh; never run directly.

STATE=${CLUSTRIX_TEST_STATE:-/var/lib/clustrix-test}
# Slow builds (Kubernetes, OpenPBS), kept across runs and checkouts.
CACHE=${CLUSTRIX_TEST_CACHE:-/var/cache/clustrix-test}
TEST_USER=${CLUSTRIX_TEST_USER:-cxuser}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[clusters] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "bringing up test clusters needs root (this is for CI and throwaway machines)"
    [ -r /etc/debian_version ] || die "the test clusters are built from Debian packages; this is not Debian"
}

# Set once by the top-level command, before kinds fork: apt-get update runs once per command.
export _CLUSTRIX_APT_MARK=${_CLUSTRIX_APT_MARK:-$STATE/.apt-updated-$$}
# ensure_packages PKG...: install the Debian packages that are missing, non-interactively.
# Kinds come up in parallel: one apt at a time, through a lock file.
ensure_packages() {
    mkdir -p "$STATE"
    (
        flock 9
        _ensure_packages "$@"
    ) 9>"$STATE/apt.lock"
}

_ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ ! -e "$_CLUSTRIX_APT_MARK" ]; then
        log "apt-get update"
        apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null || die "apt-get update failed"
        : > "$_CLUSTRIX_APT_MARK"
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
        --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || die "apt-get install ${missing[*]} failed"
}

# ensure_test_user: the non-root user that jobs run as on the test hosts.
ensure_test_user() {
    id "$TEST_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$TEST_USER"
}

# start_daemon NAME CMD...: run CMD in the background with $STATE/run/NAME.pid and $STATE/log/NAME.log,
# unless the pid file names a live process already. CMD must stay in the foreground.
start_daemon() {
    local name=$1; shift
    mkdir -p "$STATE/run" "$STATE/log"
    if daemon_alive "$name"; then return 0; fi
    setsid "$@" >>"$STATE/log/$name.log" 2>&1 < /dev/null &
    echo $! > "$STATE/run/$name.pid"
}

daemon_alive() {
    local pidfile="$STATE/run/$1.pid"
    [ -s "$pidfile" ] && pid_alive "$(cat "$pidfile")"
}

# pid_alive PID: running, not a zombie (init here reaps orphans only every few seconds).
pid_alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case "$st" in ""|Z*) return 1;; esac
}

# stop_pidfile FILE: end the process named by a pid file (ours or a daemon's own), wait, remove the file.
stop_pidfile() {
    local pidfile=$1 pid i
    [ -s "$pidfile" ] || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    if pid_alive "$pid"; then
        kill "$pid" 2>/dev/null
        for i in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
        pid_alive "$pid" && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop_daemon() { stop_pidfile "$STATE/run/$1.pid"; }

# wait_for SECONDS CMD...: retry CMD (quietly) until it succeeds or SECONDS have passed, by the
# clock rather than by a count of tries: each try may take its time on a busy machine.
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

# write_if_changed FILE MODE < content: replace FILE (creating its directory) only when its content
# changes; 0 when it changed, so callers restart a daemon only then.
write_if_changed() {
    local file=$1 mode=$2 tmp
    mkdir -p "$(dirname "$file")"
    tmp=$(mktemp "$file.XXXXXX")
    cat > "$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
    mv "$tmp" "$file"
}

# write_profile NAME < toml: one [profiles.NAME] table, merged into $STATE/clustrix.toml.
write_profile() {
    mkdir -p "$STATE/profiles.d"
    cat > "$STATE/profiles.d/$1.toml"
    merge_profiles
}

remove_profiles() {
    local name
    for name in "$@"; do rm -f "$STATE/profiles.d/$name.toml"; done
    merge_profiles
}

merge_profiles() {
    mkdir -p "$STATE/profiles.d"
    {
        echo "# Written by tests/clusters: profiles of the real test clusters on this machine."
        cat "$STATE"/profiles.d/*.toml 2>/dev/null
    } > "$STATE/clustrix.toml.tmp"
    mv "$STATE/clustrix.toml.tmp" "$STATE/clustrix.toml"
}

# Every kind, in the order `all` means. Kinds in one group of CHAINS come up one after another
# (pbs drives the Slurm that slurm brings up); the groups come up in parallel. pbspro is a real
# OpenPBS server of its own (pbs is SchedMD's Torque wrapper over Slurm).
KINDS="ssh slurm pbs sge k8s pbspro"
CHAINS="ssh slurm,pbs sge k8s pbspro"

_known_kind() { case " $KINDS " in *" $1 "*) [ -f "$HERE/$1.sh" ];; *) return 1;; esac; }

# dispatch ACTION [KIND...]: run <kind>_<action> from <kind>.sh for each kind (all when none named).
# Every kind is tried; the exit status is 1 when any of them failed. `up` runs the chains in parallel.
dispatch() {
    local action=$1 kind chain failed="" pids=() names=() i; shift
    local kinds=${*:-all}
    if [ "$kinds" = all ]; then
        kinds=""
        for kind in $KINDS; do [ -f "$HERE/$kind.sh" ] && kinds="$kinds $kind"; done
    fi
    for kind in $kinds; do
        _known_kind "$kind" || die "unknown cluster kind '$kind' (known: $KINDS)"
    done
    for kind in $KINDS; do
        # shellcheck source=/dev/null
        case " $kinds " in *" $kind "*) source "$HERE/$kind.sh";; esac
    done
    if [ "$action" != up ]; then
        for kind in $kinds; do
            # A subshell, so one kind's `die` or failing check does not stop the others.
            ( "${kind}_${action}" ) || failed="$failed $kind"
        done
    else
        for chain in $CHAINS; do
            local wanted=""
            for kind in ${chain//,/ }; do case " $kinds " in *" $kind "*) wanted="$wanted $kind";; esac; done
            [ -n "$wanted" ] || continue
            (
                for kind in $wanted; do
                    ( "${kind}_up" ) || { log "up failed for: $kind"; exit 1; }
                done
            ) &
            pids+=($!)
            names+=("$wanted")
        done
        for i in "${!pids[@]}"; do
            wait "${pids[$i]}" || failed="$failed${names[$i]}"
        done
    fi
    rm -f "$_CLUSTRIX_APT_MARK"
    [ -z "$failed" ] || { log "$action failed for:$failed"; return 1; }
}
