# A real OpenPBS 23.06 cluster (PBS Pro dialect) on this machine: pbs_server (with its PostgreSQL
# datastore), pbs_sched, pbs_comm and one pbs_mom. Sourced by up/down/status; see lib.sh.
#
# Build. Debian has no PBS server package: OpenPBS is built from the upstream tarball in
# shared/vendor/openpbs beside the repository (or $CLUSTRIX_OPENPBS_SOURCE), checked against its
# SHA256SUMS, with its two patches (needed for Python 3.11). Built once per machine into
# $CACHE/openpbs-<16 hex of the tarball's sha256>/ (lib.sh), the install prefix itself
# (OpenPBS compiles its paths in); a marker written after `make install` says the build is whole.
# `make install` would also write /etc/profile.d/pbs.sh, which puts OpenPBS's bin first on every login
# shell's PATH and so shadows SGE's /usr/bin/qsub: it goes under the prefix instead.
#
# Network. The server refuses a host name that resolves only to loopback, and this machine's own
# outside address is off limits, so the daemons get a host of their own: the network namespace
# clustrix-pbs (veth cxpbs-host 10.254.78.1/30 <-> cxpbs-ns 10.254.78.2/30, no route beyond) with
# its own UTS namespace (hostname clustrix-pbs: the mom names its node after gethostname()) and its
# own mount namespace, where $PBSPRO_DIR/etc/hosts and .../resolv.conf are bind-mounted over /etc
# (names of the daemons' world only, and no name server but the namespace's own loopback, so no lookup
# leaves it). The host's /etc/hosts gets one marked line, "10.254.78.2 clustrix-pbs", appended in place
# (it may be a bind mount) and removed by down: clients name the server by the suffix of job ids
# (qstat 5.clustrix-pbs, queue@clustrix-pbs), which must resolve here and never through DNS.
# All PBS ports (15001-15004, 15007 for PostgreSQL, 17001) live in the namespace, so they collide
# with nothing. Jobs run in the namespace too: the same filesystem, but 127.0.0.1 there is the
# namespace's loopback, not the machine's; the host side is 10.254.78.1.
#
# Configuration. The daemons and the clients read $PBSPRO_DIR/pbs.conf through PBS_CONF_FILE, never
# /etc/pbs.conf: the profile's pbs_path is $PBSPRO_DIR/bin, wrappers that set PBS_CONF_FILE and exec
# the real commands (OpenPBS's bin/ is never put on PATH). The setuid pbs_iff, which authenticates a
# non-root client to the server, honours PBS_CONF_FILE too. Jobs get it from $PBS_HOME/pbs_environment.
# The mom copies stdout/stderr with cp ($usecp *:/ /): one shared filesystem, no rcp/scp.
#
# Daemons. Each PBS daemon forks into the background and writes its pid into its own lock file
# (server_priv/server.lock, server_priv/comm.lock, sched_priv/sched.lock, mom_priv/mom.lock);
# pbs_server starts and stops its PostgreSQL itself (datastore/postmaster.pid). A pid counts as
# ours only when its command is the daemon's and it lives in the clustrix-pbs network namespace, so
# a stale file after a reboot never names a process we would signal. `down` stops them by pid, ends
# whatever is left in the namespace (jobs), removes the namespace, and keeps the build and PBS_HOME
# (server configuration, job history, datastore): the next `up` takes seconds.
#
# Memory is enforced by OpenPBS's own cgroup hook (pbs_cgroups), memory controller only (cgroup v1):
# a job's cgroup gets its `mem` as limit and the kernel's OOM killer ends a job beyond it (Exit_status
# 137); jobs that ask for no mem get no limit of their own. The hook runs only at exechost_startup (at
# mom start: the parent cgroup, and the node's resources_available.mem = the machine's memory less 1GB),
# execjob_begin, execjob_launch and execjob_epilogue (make, fill, remove the job's cgroup). Each event
# costs a pbs_python run: a trivial job takes ~2.2 s from qsub to finished (it starts after ~0.5 s),
# ~3.3 s with upstream's full event list, ~1.4 s without the hook. Its cgroups: /sys/fs/cgroup/memory/clustrix_pbs.service/.
# The mom runs in the namespace through nsenter, not `ip netns exec`, which remounts /sys and so hides
# the cgroup mounts from the hook. Without a cgroup v1 memory controller the hook stays disabled, the
# node's mem is set to 4gb, and OpenPBS enforces no memory limit.

PBSPRO_DIR=$STATE/pbspro
PBSPRO_HOME=$PBSPRO_DIR/home
PBSPRO_CONF=$PBSPRO_DIR/pbs.conf
PBSPRO_BIN=$PBSPRO_DIR/bin
PBSPRO_ETC=$PBSPRO_DIR/etc
PBSPRO_SMOKE=$PBSPRO_DIR/smoke

PBSPRO_NETNS=clustrix-pbs
PBSPRO_VETH_HOST=cxpbs-host
PBSPRO_VETH_NS=cxpbs-ns
PBSPRO_HOST_ADDR=10.254.78.1
PBSPRO_NS_ADDR=10.254.78.2
PBSPRO_PREFIXLEN=30
PBSPRO_HOSTNAME=clustrix-pbs
PBSPRO_HOSTS_MARK="# clustrix-test pbspro (tests/clusters/pbspro.sh; removed by down)"

# Like Slurm main's partitions (the tests ask for both by name): debug, the default, and long; a
# job that asks no walltime gets an hour, as Slurm's MaxTime gives it there.
PBSPRO_QUEUES="debug long"
PBSPRO_DEFAULT_QUEUE=debug
PBSPRO_DEFAULT_WALLTIME=01:00:00
PBSPRO_NCPUS=2
PBSPRO_MEM=4gb
PBSPRO_CGROUP_PREFIX=clustrix_pbs
PBSPRO_HOOK_EVENTS=execjob_begin,execjob_epilogue,execjob_launch,exechost_startup

# The daemons by the name we use, their lock file under PBS_HOME and their command (/proc/PID/comm).
PBSPRO_DAEMONS="comm server sched mom"
_pbspro_lock() {
    case $1 in
        comm) echo "$PBSPRO_HOME/server_priv/comm.lock";;
        server) echo "$PBSPRO_HOME/server_priv/server.lock";;
        sched) echo "$PBSPRO_HOME/sched_priv/sched.lock";;
        mom) echo "$PBSPRO_HOME/mom_priv/mom.lock";;
        postgres) echo "$PBSPRO_HOME/datastore/postmaster.pid";;
    esac
}
_pbspro_comm() {
    case $1 in
        server) echo pbs_server.bin;;
        postgres) echo postgres;;
        *) echo "pbs_$1";;
    esac
}

# ---------------------------------------------------------------------------------------------------
# the source and the cached build

# _pbspro_source: the folder with the upstream tarball, its two patches and SHA256SUMS.
_pbspro_source() {
    local dir=${CLUSTRIX_OPENPBS_SOURCE:-$(realpath -m "$HERE/../../../shared/vendor/openpbs")}
    if [ ! -f "$dir/SHA256SUMS" ]; then
        if [ -n "${CLUSTRIX_OPENPBS_SOURCE:-}" ]; then
            die "pbspro: CLUSTRIX_OPENPBS_SOURCE=$dir holds no SHA256SUMS (it must name a folder with openpbs-*.tar.gz, its patches and SHA256SUMS)"
        fi
        die "pbspro: no OpenPBS source: $dir does not exist (the vendored source lives in shared/vendor/openpbs beside the repository); set CLUSTRIX_OPENPBS_SOURCE to a folder with openpbs-*.tar.gz, its patches and SHA256SUMS"
    fi
    (cd "$dir" && pwd)
}

# _pbspro_tarball SRC: the one tarball SHA256SUMS names.
_pbspro_tarball() {
    local t
    t=$(awk '$2 ~ /^openpbs-.*\.tar\.gz$/ {print $2}' "$1/SHA256SUMS")
    [ "$(printf '%s\n' "$t" | grep -c .)" = 1 ] || die "pbspro: $1/SHA256SUMS must name exactly one openpbs-*.tar.gz"
    echo "$t"
}

# _pbspro_prefix: the install prefix of the cached build, keyed by the tarball's checksum as
# SHA256SUMS states it (the files are verified before any build; a finished build is trusted by its marker).
_pbspro_prefix() {
    local src sha
    src=$(_pbspro_source) || exit 1
    sha=$(awk -v t="$(_pbspro_tarball "$src")" '$2 == t {print $1}' "$src/SHA256SUMS")
    [[ $sha =~ ^[0-9a-f]{64}$ ]] || die "pbspro: no sha256 for the tarball in $src/SHA256SUMS"
    echo "$CACHE/openpbs-${sha:0:16}"
}

_pbspro_built() { [ -f "$1/.clustrix-build/complete" ] && [ -x "$1/sbin/pbs_server.bin" ]; }

# _pbspro_build PREFIX: configure, make and install OpenPBS into PREFIX, once per machine. Two runs
# at once wait for each other on a lock; a build that died half way is removed and redone, never
# used (the marker is written last).
_pbspro_build() {
    local prefix=$1 src
    src=$(_pbspro_source) || exit 1
    # Checked on every up (it takes milliseconds): a damaged source folder shows at once.
    (cd "$src" && sha256sum --quiet -c SHA256SUMS) || die "pbspro: $src: the files do not match SHA256SUMS"
    if ! _pbspro_built "$prefix"; then
        mkdir -p "$CACHE"
        (
            flock 9
            _pbspro_built "$prefix" && exit 0
            _pbspro_build_locked "$src" "$prefix"
        ) 9>"$CACHE/openpbs.lock" || exit 1
    fi
    # The key is the tarball's checksum: a build made with other patches is refused, not reused.
    grep '\.patch$' "$src/SHA256SUMS" | cmp -s - "$prefix/.clustrix-build/patches.sha256" \
        || die "pbspro: $prefix was built with other patches than $src has (see $prefix/.clustrix-build); remove $prefix to rebuild"
}

_pbspro_build_deps() {
    # The Debian list of OpenPBS's INSTALL, by real package names (ensure_packages asks dpkg-query,
    # which knows no virtual packages: libexpat1-dev, libncurses-dev), plus patch.
    ensure_packages gcc g++ make libtool autoconf automake patch perl swig \
        libhwloc-dev libx11-dev libxt-dev libxext-dev libxft-dev libedit-dev libical-dev libncurses-dev \
        libexpat1-dev libssl-dev python3-dev tcl-dev tk-dev postgresql-server-dev-all
}

_pbspro_run_deps() {
    # The datastore is a PostgreSQL instance the server starts itself, with Debian's binaries.
    ensure_packages postgresql postgresql-contrib python3 libedit2 libical3 expat tcl tk \
        iproute2 util-linux
}

_pbspro_build_locked() {
    local src=$1 prefix=$2 tarball build t0=$SECONDS p logf="$STATE/log/pbspro-build.log"
    tarball=$(_pbspro_tarball "$src") || exit 1
    mkdir -p "$STATE/log"
    _pbspro_build_deps
    log "pbspro: building OpenPBS from $src/$tarball into $prefix (about 10 minutes on 2 cores; log $logf)"
    rm -rf "$prefix"
    build=$(mktemp -d "$CACHE/openpbs-build.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$build'" EXIT
    tar -xzf "$src/$tarball" -C "$build" || die "pbspro: cannot unpack $src/$tarball"
    cd "$build"/openpbs-* || die "pbspro: $tarball does not unpack to openpbs-*/"
    : > "$logf"
    # The patches in the order of their names (0001-, 0002-).
    while read -r p; do
        patch -p1 --forward < "$src/$p" >>"$logf" 2>&1 || die "pbspro: patch $p does not apply (see $logf)"
    done < <(awk '$2 ~ /\.patch$/ {print $2}' "$src/SHA256SUMS" | LC_ALL=C sort)
    { ./autogen.sh \
        && ./configure --prefix="$prefix" --with-python=/usr \
        && make -j"$(nproc)" \
        && make install sysprofiledir="$prefix/etc/profile.d" unitfiledir="$prefix/lib/systemd/system"
    } >>"$logf" 2>&1 || { rm -rf "$prefix"; die "pbspro: the OpenPBS build failed (see the end of $logf)"; }
    mkdir -p "$prefix/.clustrix-build"
    grep '\.patch$' "$src/SHA256SUMS" > "$prefix/.clustrix-build/patches.sha256"
    grep -F "$tarball" "$src/SHA256SUMS" > "$prefix/.clustrix-build/tarball.sha256"
    echo "$((SECONDS - t0))" > "$prefix/.clustrix-build/build-seconds"
    date -u +%FT%TZ > "$prefix/.clustrix-build/complete"
    log "pbspro: OpenPBS built and installed in $((SECONDS - t0))s"
}

# _pbspro_setuid PREFIX: `make install` leaves these without the setuid bit; a non-root qsub then
# fails with "pbs_iff: cannot connect to host".
_pbspro_setuid() {
    chown root:root "$1/sbin/pbs_iff" "$1/sbin/pbs_rcp"
    chmod 4755 "$1/sbin/pbs_iff" "$1/sbin/pbs_rcp"
}

# ---------------------------------------------------------------------------------------------------
# the namespace

_pbspro_netns_works() { ip netns exec "$PBSPRO_NETNS" true 2>/dev/null; }

# _pbspro_netns_up: namespace + veth pair + addresses; every step is safe to repeat. 0 when made anew.
_pbspro_netns_up() {
    local made=1
    if ! _pbspro_netns_works; then
        # Missing, or a stale /run/netns entry (e.g. left on a disk-backed /run by a reboot).
        ip netns del "$PBSPRO_NETNS" 2>/dev/null || true
        ip link del "$PBSPRO_VETH_HOST" 2>/dev/null || true
        ip netns add "$PBSPRO_NETNS" \
            || die "pbspro: cannot create network namespace $PBSPRO_NETNS (needs CAP_SYS_ADMIN and iproute2)"
        made=0
    fi
    if ! ip netns exec "$PBSPRO_NETNS" ip link show "$PBSPRO_VETH_NS" >/dev/null 2>&1 \
        || ! ip link show "$PBSPRO_VETH_HOST" >/dev/null 2>&1; then
        ip link del "$PBSPRO_VETH_HOST" 2>/dev/null || true
        ip netns exec "$PBSPRO_NETNS" ip link del "$PBSPRO_VETH_NS" 2>/dev/null || true
        ip link add "$PBSPRO_VETH_HOST" type veth peer name "$PBSPRO_VETH_NS" netns "$PBSPRO_NETNS" \
            || die "pbspro: cannot create veth pair $PBSPRO_VETH_HOST/$PBSPRO_VETH_NS"
        made=0
    fi
    ip addr replace "$PBSPRO_HOST_ADDR/$PBSPRO_PREFIXLEN" dev "$PBSPRO_VETH_HOST"
    ip link set "$PBSPRO_VETH_HOST" up
    ip netns exec "$PBSPRO_NETNS" ip link set lo up
    ip netns exec "$PBSPRO_NETNS" ip addr replace "$PBSPRO_NS_ADDR/$PBSPRO_PREFIXLEN" dev "$PBSPRO_VETH_NS"
    ip netns exec "$PBSPRO_NETNS" ip link set "$PBSPRO_VETH_NS" up
    return $made
}

# _pbspro_host_name: this machine's name as qsub sends it (PBS_O_HOST); in the namespace it is the
# host side of the veth pair.
_pbspro_host_name() {
    local h
    h=$(hostname)
    case "$h" in ""|localhost|"$PBSPRO_HOSTNAME") echo "$PBSPRO_HOSTNAME-host";; *) echo "$h";; esac
}

# _pbspro_ns_files: /etc/hosts and /etc/resolv.conf of the daemons' mount namespace. 0 when changed.
_pbspro_ns_files() {
    local changed=1
    mkdir -p "$PBSPRO_ETC"
    write_if_changed "$PBSPRO_ETC/hosts" 0644 <<EOF && changed=0
# Written by tests/clusters/pbspro.sh: /etc/hosts of the OpenPBS daemons and jobs (bind-mounted in
# their own mount namespace only). The server reverse-resolves clients (the host side of the veth).
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
$PBSPRO_NS_ADDR	$PBSPRO_HOSTNAME
$PBSPRO_HOST_ADDR	$(_pbspro_host_name)
EOF
    write_if_changed "$PBSPRO_ETC/resolv.conf" 0644 <<EOF && changed=0
# Written by tests/clusters/pbspro.sh: no name server but the namespace's own loopback (where none
# listens), so a name missing from the private /etc/hosts fails at once and no lookup leaves.
nameserver 127.0.0.1
options attempts:1 timeout:1
EOF
    return $changed
}

# _pbspro_in_ns CMD...: run CMD as a PBS daemon or admin command: in the namespace, with hostname
# clustrix-pbs and the private /etc files, and a clean environment (PATH finds Debian's PostgreSQL
# binaries, which PBS's pbs_db_env looks up with `type psql`). nsenter, not `ip netns exec`: that one
# remounts /sys for the namespace, which hides the cgroup mounts from the mom's cgroup hook.
_pbspro_in_ns() {
    local pgbin
    pgbin=$(_pbspro_pgbin) || exit 1
    # shellcheck disable=SC2016
    env -i PATH="$pgbin:/usr/sbin:/usr/bin:/sbin:/bin" LANG=C.UTF-8 HOME=/root \
        PBS_CONF_FILE="$PBSPRO_CONF" \
        nsenter --net="/run/netns/$PBSPRO_NETNS" unshare --mount --uts --propagation private \
        /bin/sh -c 'hostname "$1" && mount --bind "$2" /etc/hosts && mount --bind "$3" /etc/resolv.conf && shift 3 && exec "$@"' \
        sh "$PBSPRO_HOSTNAME" "$PBSPRO_ETC/hosts" "$PBSPRO_ETC/resolv.conf" "$@"
}

# _pbspro_pgbin: Debian's PostgreSQL server binaries (the newest installed major version).
_pbspro_pgbin() {
    local d
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1)
    { [ -n "$d" ] && [ -x "$d/pg_ctl" ]; } || die "pbspro: no PostgreSQL server in /usr/lib/postgresql/*/bin (package postgresql)"
    echo "$d"
}

# _pbspro_etc_hosts: the host's marked line for the server's name, appended in place (idempotent).
_pbspro_etc_hosts() {
    local line="$PBSPRO_NS_ADDR	$PBSPRO_HOSTNAME	$PBSPRO_HOSTS_MARK"
    grep -qxF "$line" /etc/hosts && return 0
    _pbspro_etc_hosts_remove
    # A last line without its newline would swallow ours.
    [ -z "$(tail -c 1 /etc/hosts)" ] || echo >> /etc/hosts
    echo "$line" >> /etc/hosts
}

# _pbspro_etc_hosts_remove: drop our marked lines, rewriting /etc/hosts in place (no rename: it may
# be a bind mount).
_pbspro_etc_hosts_remove() {
    local rest
    grep -qF "$PBSPRO_HOSTS_MARK" /etc/hosts 2>/dev/null || return 0
    rest=$(grep -vF "$PBSPRO_HOSTS_MARK" /etc/hosts)
    printf '%s\n' "$rest" > /etc/hosts
}

# ---------------------------------------------------------------------------------------------------
# configuration files

# _pbspro_conf PREFIX: pbs.conf of daemons and clients. 0 when changed.
_pbspro_conf() {
    write_if_changed "$PBSPRO_CONF" 0644 <<EOF
# Written by tests/clusters/pbspro.sh: configuration of the OpenPBS test cluster, read through
# PBS_CONF_FILE by its daemons, by the wrappers in $PBSPRO_BIN and by jobs (pbs_environment).
PBS_EXEC=$1
PBS_HOME=$PBSPRO_HOME
PBS_SERVER=$PBSPRO_HOSTNAME
PBS_START_SERVER=1
PBS_START_SCHED=1
PBS_START_COMM=1
PBS_START_MOM=1
EOF
}

# _pbspro_wrappers PREFIX: $PBSPRO_BIN/<cmd> for every command of PREFIX/bin, with our PBS_CONF_FILE.
_pbspro_wrappers() {
    local prefix=$1 f c addr_re=${PBSPRO_NS_ADDR//./\\.}
    mkdir -p "$PBSPRO_BIN"
    chmod 755 "$PBSPRO_DIR" "$PBSPRO_BIN"
    for f in "$prefix"/bin/*; do
        { [ -f "$f" ] && [ -x "$f" ]; } || continue
        c=${f##*/}
        write_if_changed "$PBSPRO_BIN/$c" 0755 <<EOF || true
#!/bin/sh
# Written by tests/clusters/pbspro.sh: OpenPBS's $c for the test cluster, whose configuration is
# $PBSPRO_CONF (not /etc/pbs.conf).
# Only while the cluster is up: its server's name must come from /etc/hosts (else it would be asked
# of DNS) and its address must be on the veth pair (else it would be routed out of this machine).
if ! grep -q '^${addr_re}[[:space:]]\{1,\}${PBSPRO_HOSTNAME}\([[:space:]]\|\$\)' /etc/hosts \\
    || [ ! -e /sys/class/net/$PBSPRO_VETH_HOST ]; then
    echo "$c: the OpenPBS test cluster is down (tests/clusters/up pbspro)" >&2
    exit 1
fi
PBS_CONF_FILE=$PBSPRO_CONF
export PBS_CONF_FILE
exec "$f" "\$@"
EOF
    done
}

# _pbspro_home PREFIX: PBS_HOME's layout (OpenPBS's own postinstall, which leaves existing files
# alone), the mom's config and the jobs' environment. 0 when the mom must (re)read them.
_pbspro_home() {
    local prefix=$1 changed=1 version
    if [ ! -f "$PBSPRO_HOME/.clustrix-layout" ]; then
        version=$("$prefix/bin/qstat" --version 2>/dev/null | sed -n 's/^pbs_version = //p')
        [ -n "$version" ] || die "pbspro: $prefix/bin/qstat --version names no version"
        mkdir -p "$PBSPRO_HOME"
        PBS_CONF_FILE=$PBSPRO_CONF "$prefix/libexec/pbs_postinstall" server "$version" "$prefix" \
            "$PBSPRO_HOME" postgres sameconf >"$STATE/log/pbspro-postinstall.log" 2>&1 \
            || die "pbspro: pbs_postinstall failed (see $STATE/log/pbspro-postinstall.log)"
        touch "$PBSPRO_HOME/.clustrix-layout"
        changed=0
    fi
    write_if_changed "$PBSPRO_HOME/mom_priv/config" 0644 <<EOF && changed=0
\$clienthost $PBSPRO_HOSTNAME
\$usecp *:/ /
\$logevent 0x1ff
EOF
    write_if_changed "$PBSPRO_HOME/pbs_environment" 0644 <<EOF && changed=0
PATH=/usr/local/bin:/usr/bin:/bin
LANG=C.UTF-8
PBS_CONF_FILE=$PBSPRO_CONF
EOF
    return $changed
}

# ---------------------------------------------------------------------------------------------------
# daemons

# _pbspro_pid NAME: the pid in NAME's lock/pid file when it is our daemon: a live process with the
# daemon's command, in our network namespace. Nothing (1) otherwise, e.g. for a pid reused after a reboot.
_pbspro_pid() {
    local file pid st ns want
    file=$(_pbspro_lock "$1")
    [ -s "$file" ] || return 1
    pid=$(head -n 1 "$file" 2>/dev/null | tr -dc 0-9)
    [ -n "$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(_pbspro_comm "$1")" ] || return 1
    st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    case "$st" in ""|Z|X) return 1;; esac
    # Root only (status may run as anyone): the process's network namespace is ours.
    if [ "$(id -u)" = 0 ]; then
        ns=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || return 1
        want=$(stat -L -c %i "/run/netns/$PBSPRO_NETNS" 2>/dev/null) || return 1
        [ "$ns" = "$want" ] || return 1
    fi
    echo "$pid"
}

_pbspro_alive() { _pbspro_pid "$1" >/dev/null; }

# _pbspro_stop NAME SECONDS: TERM our daemon by its pid, wait, then KILL. A lock file that names no
# daemon of ours is left alone (the daemon itself ignores stale ones: it locks the file).
_pbspro_stop() {
    local pid i
    pid=$(_pbspro_pid "$1") || return 0
    kill "$pid" 2>/dev/null
    for i in $(seq $(($2 * 10))); do _pbspro_alive "$1" || return 0; sleep 0.1; done
    log "pbspro: $1 (pid $pid) did not stop in $2s, killing it"
    kill -9 "$pid" 2>/dev/null
    for i in $(seq 20); do _pbspro_alive "$1" || return 0; sleep 0.1; done
}

_pbspro_stop_all() {
    _pbspro_stop mom 10
    _pbspro_stop sched 10
    # The server stops its PostgreSQL as it shuts down; make sure, by postgres's own pid file.
    _pbspro_stop server 30
    _pbspro_stop postgres 20
    _pbspro_stop comm 10
}

# _pbspro_start NAME CMD...: start a daemon in the namespace unless it runs; wait for its lock file.
_pbspro_start() {
    local name=$1; shift
    _pbspro_alive "$name" && return 0
    _pbspro_in_ns "$@" </dev/null >>"$STATE/log/pbspro-$name.log" 2>&1 \
        || die "pbspro: starting $name failed (see $STATE/log/pbspro-$name.log and $PBSPRO_HOME/*_logs)"
    wait_for 30 _pbspro_alive "$name" \
        || die "pbspro: $name does not run after start (see $STATE/log/pbspro-$name.log and $PBSPRO_HOME/*_logs)"
    log "pbspro: $name started (pid $(_pbspro_pid "$name"))"
}

# _pbspro_datastore PREFIX: a new datastore (PostgreSQL cluster + PBS schema) when there is none,
# made by OpenPBS's own pbs_db_utility as postgres; 0 when made now (the server then starts with -t create).
_pbspro_datastore() {
    local prefix=$1
    [ -f "$PBSPRO_HOME/.clustrix-created" ] && return 1
    _pbspro_stop_all
    # A datastore without our marker is half made (or foreign): start it over.
    rm -rf "$PBSPRO_HOME/datastore"
    log "pbspro: creating the server's datastore (PostgreSQL $(basename "$(dirname "$(_pbspro_pgbin)")"))"
    # shellcheck disable=SC2016
    _pbspro_in_ns /bin/sh -c '. "$1/libexec/pbs_db_env" && PBS_DATA_SERVICE_USER=postgres exec "$1/libexec/pbs_db_utility" install_db' \
        sh "$prefix" >"$STATE/log/pbspro-datastore.log" 2>&1 \
        || die "pbspro: pbs_db_utility install_db failed (see $STATE/log/pbspro-datastore.log)"
    return 0
}

_pbspro_start_all() {
    local prefix=$1 create=$2
    _pbspro_start comm "$prefix/sbin/pbs_comm"
    if [ -n "$create" ]; then
        _pbspro_start server "$prefix/sbin/pbs_server" -t create
    else
        # A postmaster.pid that names no postgres of ours (left by a reboot) would stop PostgreSQL
        # from starting if its pid now belongs to another process.
        _pbspro_alive server || _pbspro_alive postgres || rm -f "$(_pbspro_lock postgres)"
        _pbspro_start server "$prefix/sbin/pbs_server"
    fi
    wait_for 30 _pbspro_qmgr -c "list server" || die "pbspro: the server does not answer qmgr (see $PBSPRO_HOME/server_logs)"
    _pbspro_start sched "$prefix/sbin/pbs_sched"
    _pbspro_start_mom "$prefix"
}

# _pbspro_qmgr ARGS...: qmgr as root on the server's host (what makes root a manager).
_pbspro_qmgr() { _pbspro_in_ns timeout 30 "$PBSPRO_BIN/qmgr" "$@"; }

# _pbspro_configure: queue, node and server settings; `set` is idempotent, `create` only when missing.
_pbspro_configure() {
    local queue
    # Jobs run under bash, but not as a login shell (-S, the server's default for every qsub): a
    # login shell runs the submitting user's login files, and root's on this kind of machine run
    # `pyenv rehash`, whose lock file a job cancelled mid-rehash leaves behind; every later job of
    # root's then waits 60 s for that lock before its script starts.
    printf '#!/bin/sh\n# The PBS Pro test jobs'"'"' shell (see _pbspro_configure in %s).\nexec /bin/bash "$@"\n' \
        "tests/clusters/pbspro.sh" > "$PBSPRO_DIR/job-shell"
    chmod 755 "$PBSPRO_DIR/job-shell"
    for queue in $PBSPRO_QUEUES; do
        _pbspro_qmgr -c "list queue $queue" >/dev/null 2>&1 \
            || _pbspro_qmgr -c "create queue $queue queue_type = Execution" >/dev/null \
            || die "pbspro: qmgr: create queue $queue failed"
    done
    _pbspro_qmgr -c "list node $PBSPRO_HOSTNAME" >/dev/null 2>&1 \
        || _pbspro_qmgr -c "create node $PBSPRO_HOSTNAME" >/dev/null \
        || die "pbspro: qmgr: create node $PBSPRO_HOSTNAME failed"
    _pbspro_qmgr <<EOF >"$STATE/log/pbspro-qmgr.log" 2>&1 || die "pbspro: qmgr settings failed (see $STATE/log/pbspro-qmgr.log)"
$(for queue in $PBSPRO_QUEUES; do
    printf 'set queue %s %s\n' "$queue" "queue_type = Execution" "$queue" "enabled = True" \
        "$queue" "started = True" "$queue" "resources_default.walltime = $PBSPRO_DEFAULT_WALLTIME"
done)
set server default_queue = $PBSPRO_DEFAULT_QUEUE
set node $PBSPRO_HOSTNAME resources_available.ncpus = $PBSPRO_NCPUS
set server job_history_enable = True
set server scheduling = True
set server flatuid = True
set server acl_roots = root@*
set server default_qsub_arguments = "-S $PBSPRO_DIR/job-shell"
EOF
    # With the cgroup hook, the mom reports the node's mem itself (see the header).
    if ! _pbspro_memcg; then
        _pbspro_qmgr -c "set node $PBSPRO_HOSTNAME resources_available.mem = $PBSPRO_MEM" >/dev/null \
            || die "pbspro: qmgr: cannot set the node's mem"
    fi
}

# _pbspro_memcg: a cgroup v1 memory controller is mounted (what the cgroup hook needs).
_pbspro_memcg() { awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ {f = 1} END {exit !f}' /proc/mounts; }

# _pbspro_memory_hook: OpenPBS's cgroup hook, for memory only (see the header), when it can work;
# 1 when it cannot (then disabled).
_pbspro_memory_hook() {
    local cf=$PBSPRO_DIR/pbs_cgroups.json
    if ! _pbspro_memcg; then
        _pbspro_qmgr -c "set hook pbs_cgroups enabled = false" >/dev/null || die "pbspro: qmgr: cannot disable pbs_cgroups"
        log "pbspro: no cgroup v1 memory controller: OpenPBS enforces no memory limit here"
        return 1
    fi
    write_if_changed "$cf" 0644 <<EOF || true
{
    "cgroup_prefix"         : "$PBSPRO_CGROUP_PREFIX",
    "exclude_hosts"         : [],
    "exclude_vntypes"       : [],
    "run_only_on_hosts"     : [],
    "periodic_resc_update"  : false,
    "vnode_per_numa_node"   : false,
    "online_offlined_nodes" : true,
    "use_hyperthreads"      : false,
    "ncpus_are_cores"       : false,
    "discover_gpus"         : false,
    "manage_rlimit_as"      : false,
    "cgroup" : {
        "cpuacct" : { "enabled" : false },
        "cpuset"  : { "enabled" : false },
        "devices" : { "enabled" : false },
        "hugetlb" : { "enabled" : false },
        "memsw"   : { "enabled" : false },
        "memory" : {
            "enabled"            : true,
            "exclude_hosts"      : [],
            "exclude_vntypes"    : [],
            "soft_limit"         : false,
            "enforce_default"    : false,
            "exclhost_ignore_default" : false,
            "default"            : "0B",
            "reserve_percent"    : 0,
            "reserve_amount"     : "1GB"
        }
    }
}
EOF
    # The server keeps the configuration in its datastore: import it only when it differs.
    _pbspro_qmgr -c "export hook pbs_cgroups application/x-config default" 2>/dev/null | cmp -s - "$cf" \
        || _pbspro_qmgr -c "import hook pbs_cgroups application/x-config default $cf" >/dev/null 2>&1 \
        || die "pbspro: qmgr: cannot import $cf into hook pbs_cgroups"
    # Each `set`, even of the same value, sends the hook to the mom again: only when it differs.
    _pbspro_qmgr -c "list hook pbs_cgroups" 2>/dev/null | tr -d ' \t\n' \
        | grep -q "enabled=true,*event=$PBSPRO_HOOK_EVENTS,*user=.*debug=false" && return 0
    _pbspro_qmgr <<EOF >>"$STATE/log/pbspro-qmgr.log" 2>&1 || die "pbspro: qmgr: cannot enable hook pbs_cgroups (see $STATE/log/pbspro-qmgr.log)"
set hook pbs_cgroups event = "$PBSPRO_HOOK_EVENTS"
set hook pbs_cgroups debug = false
set hook pbs_cgroups enabled = true
EOF
}

# _pbspro_mom_has_hook: the server has sent the mom the whole hook as configured (it does so by
# itself, the script in several pieces: a mom restarted half way runs a truncated script).
_pbspro_mom_has_hook() {
    local f
    cmp -s "$PBSPRO_DIR/pbs_cgroups.json" "$PBSPRO_HOME/server_priv/hooks/pbs_cgroups.CF" || return 1
    grep -qx "event=$PBSPRO_HOOK_EVENTS" "$PBSPRO_HOME/server_priv/hooks/pbs_cgroups.HK" || return 1
    for f in HK CF PY; do
        cmp -s "$PBSPRO_HOME/server_priv/hooks/pbs_cgroups.$f" "$PBSPRO_HOME/mom_priv/hooks/pbs_cgroups.$f" || return 1
    done
}

# _pbspro_mom_hook_sum: the checksum of the hook as the mom has it now ("none" without one).
_pbspro_mom_hook_sum() {
    cat "$PBSPRO_HOME"/mom_priv/hooks/pbs_cgroups.{HK,CF,PY} 2>/dev/null | sha256sum | cut -c1-16
}

# _pbspro_start_mom PREFIX: start the mom, noting which hook it started with (see pbspro_up).
_pbspro_start_mom() {
    _pbspro_alive mom && return 0
    _pbspro_mom_hook_sum > "$PBSPRO_DIR/mom-started-with-hook"
    _pbspro_start mom "$1/sbin/pbs_mom"
}

# _pbspro_mom_hook_current: the hook's exechost_startup (which makes the jobs' parent cgroup and sets
# the node's mem) runs only when the mom starts: restart a mom that started before it had the hook as
# it is now (the server sends it again, unchanged, whenever the mom reconnects: the content counts).
# A node that the mom offlined for a hook error (fail_action) is put back once the mom runs the good one.
_pbspro_mom_hook_current() {
    local prefix=$1
    wait_for 60 _pbspro_mom_has_hook || die "pbspro: the mom did not get the pbs_cgroups hook (see $PBSPRO_HOME/mom_logs)"
    [ "$(_pbspro_mom_hook_sum)" = "$(cat "$PBSPRO_DIR/mom-started-with-hook" 2>/dev/null)" ] && return 1
    log "pbspro: restarting the mom for its new pbs_cgroups hook"
    _pbspro_stop mom 10
    _pbspro_start_mom "$prefix"
    if "$PBSPRO_BIN/pbsnodes" "$PBSPRO_HOSTNAME" 2>/dev/null | grep -q "comment = offlined by hook 'pbs_cgroups' due to hook error"; then
        log "pbspro: clearing the hook-error offline state of node $PBSPRO_HOSTNAME"
        { _pbspro_in_ns "$PBSPRO_BIN/pbsnodes" -r "$PBSPRO_HOSTNAME" >/dev/null \
            && _pbspro_qmgr -c "unset node $PBSPRO_HOSTNAME comment" >/dev/null; } \
            || die "pbspro: cannot clear the offline state of node $PBSPRO_HOSTNAME"
    fi
}

# ---------------------------------------------------------------- smoke test

# _pbspro_jobs [QSTAT ARGS...] ID: `qstat -x -f -F json` of a job (or with -t, an array and its
# subjobs) as one line per job: "<id> <job_state> <Exit_status, or - while there is none>".
_pbspro_jobs() {
    "$PBSPRO_BIN/qstat" -x -f -F json "$@" 2>/dev/null | python3 -c '
import json, sys
for jid, j in json.load(sys.stdin).get("Jobs", {}).items():
    print(jid, j.get("job_state", "?"), j.get("Exit_status", "-"))'
}

# _pbspro_finished ID [QSTAT ARGS]: every job qstat -x names is F (finished).
_pbspro_finished() {
    local id=$1 out; shift
    out=$(_pbspro_jobs "$@" "$id")
    [ -n "$out" ] && awk '$2 != "F" {bad = 1} END {exit bad}' <<<"$out"
}

_pbspro_smoke() {
    local out=$PBSPRO_SMOKE id user t0 jobs i left before
    # Jobs of others (tests running while a changed configuration restarted the daemons) are theirs:
    # the round checks that it leaves none of its own behind.
    before=$(timeout 30 "$PBSPRO_BIN/qselect" 2>/dev/null | LC_ALL=C sort)
    [ -z "$before" ] || log "pbspro: smoke: jobs already there, left alone: ${before//$'\n'/ }"
    mkdir -p "$out"; chmod 1777 "$out"
    rm -f "$out"/*.out "$out"/*.err
    cat > "$out/job.sh" <<'EOF'
#!/bin/sh
#PBS -N pbspro-smoke
#PBS -l select=1:ncpus=1
#PBS -l walltime=00:01:00
echo "ok $(id -un) PBS_JOBID=$PBS_JOBID PBS_ARRAY_INDEX=$PBS_ARRAY_INDEX"
EOF
    chmod 755 "$out/job.sh"

    # One job as root and one as the test user (a clean environment: the wrapper supplies the rest).
    for user in root "$TEST_USER"; do
        t0=$(date +%s.%N)
        id=$(cd "$out" && runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME=/ \
            timeout 30 "$PBSPRO_BIN/qsub" -o "$out/single-$user.out" -e "$out/single-$user.err" "$out/job.sh" 2>&1) \
            || die "pbspro: qsub as $user failed: $id"
        [[ $id =~ ^[0-9]+\.$PBSPRO_HOSTNAME$ ]] || die "pbspro: qsub as $user printed '$id', not N.$PBSPRO_HOSTNAME"
        wait_for 60 _pbspro_finished "$id" || die "pbspro: job $id not finished after 60s: $(_pbspro_jobs "$id")"
        jobs=$(_pbspro_jobs "$id")
        [ "$jobs" = "$id F 0" ] || die "pbspro: job $id of $user: '$jobs', expected '$id F 0'"
        wait_for 10 grep -q "^ok $user PBS_JOBID=$id " "$out/single-$user.out" \
            || die "pbspro: job $id output lacks PBS_JOBID=$id: $(cat "$out/single-$user.out" 2>&1)"
        log "pbspro: smoke: $user's job $id finished, Exit_status 0, in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')s"
    done

    # An array job: two subjobs, each with its index.
    id=$(cd "$out" && timeout 30 "$PBSPRO_BIN/qsub" -J 0-1 -o "$out/array.^array_index^.out" \
        -e "$out/array.^array_index^.err" "$out/job.sh" 2>&1) || die "pbspro: qsub -J 0-1 failed: $id"
    [[ $id =~ ^[0-9]+\[\]\.$PBSPRO_HOSTNAME$ ]] || die "pbspro: qsub -J 0-1 printed '$id', not N[].$PBSPRO_HOSTNAME"
    wait_for 60 _pbspro_finished "$id" -t || die "pbspro: array $id not finished after 60s: $(_pbspro_jobs -t "$id")"
    for i in 0 1; do
        jobs=$(_pbspro_jobs "${id/\[\]/[$i]}")
        [ "$jobs" = "${id/\[\]/[$i]} F 0" ] || die "pbspro: subjob $i of $id: '$jobs', expected finished with Exit_status 0"
        wait_for 10 grep -q "^ok root PBS_JOBID=${id/\[\]/\\[$i\\]} PBS_ARRAY_INDEX=$i\$" "$out/array.$i.out" \
            || die "pbspro: subjob $i of $id wrote: $(cat "$out/array.$i.out" 2>&1)"
    done
    log "pbspro: smoke: array $id ran subjobs ${id/\[\]/[0]} and ${id/\[\]/[1]}"

    # qdel of a job that waits (held, so it can never start in between).
    id=$(cd "$out" && timeout 30 "$PBSPRO_BIN/qsub" -h -o "$out/held.out" -e "$out/held.err" "$out/job.sh" 2>&1) \
        || die "pbspro: qsub -h failed: $id"
    timeout 30 "$PBSPRO_BIN/qdel" "$id" || die "pbspro: qdel $id failed"
    wait_for 30 _pbspro_finished "$id" || die "pbspro: held job $id not finished 30s after qdel: $(_pbspro_jobs "$id")"
    [ ! -e "$out/held.out" ] || die "pbspro: held job $id ran (it wrote $out/held.out)"
    log "pbspro: smoke: held job $id ended by qdel"

    # A job beyond its mem is killed by the cgroup hook's limit.
    if _pbspro_memcg; then
        cat > "$out/mem.sh" <<'EOF'
#!/bin/sh
exec python3 -c 'b = [bytearray(16 << 20) for _ in range(16)]; print("allocated 256 MB")'
EOF
        chmod 755 "$out/mem.sh"
        id=$(cd "$out" && timeout 30 "$PBSPRO_BIN/qsub" -l select=1:ncpus=1:mem=64mb -j oe -o "$out/mem.out" "$out/mem.sh" 2>&1) \
            || die "pbspro: qsub -l select=1:ncpus=1:mem=64mb failed: $id"
        wait_for 60 _pbspro_finished "$id" || die "pbspro: job $id not finished after 60s: $(_pbspro_jobs "$id")"
        jobs=$(_pbspro_jobs "$id")
        [ "$jobs" = "$id F 137" ] \
            || die "pbspro: job $id, 256 MB with mem=64mb: '$jobs', expected '$id F 137' (killed): $(cat "$out/mem.out" 2>&1)"
        log "pbspro: smoke: job $id beyond its mem=64mb was killed (Exit_status 137)"
    fi

    left=$(timeout 30 "$PBSPRO_BIN/qstat" -t 2>&1) || die "pbspro: qstat -t failed: $left"
    if [ -z "$before" ]; then
        [ -z "$left" ] || die "pbspro: jobs left queued/held/running after the smoke round: $left"
    else
        left=$(timeout 30 "$PBSPRO_BIN/qselect" 2>/dev/null | LC_ALL=C sort | comm -13 <(echo "$before") -)
        [ -z "$left" ] || die "pbspro: jobs of the smoke round left queued/held/running: $left"
    fi
    rm -f "$out"/*.out "$out"/*.err
}

# ---------------------------------------------------------------------------------------------------
# the contract

pbspro_up() {
    local t0=$SECONDS prefix fresh="" restart="" create="" dialect="" d
    _pbspro_run_deps
    ensure_test_user
    # (A `die` in $(...) ends only that subshell: hence the `|| exit 1`s.)
    prefix=$(_pbspro_prefix) || exit 1
    _pbspro_build "$prefix"
    _pbspro_setuid "$prefix"
    mkdir -p "$PBSPRO_DIR" "$STATE/log" "$STATE/run"
    chmod 755 "$PBSPRO_DIR"

    # Anything the running daemons read at start-up changed: restart them (after a new namespace,
    # daemons that still run somewhere are no use either).
    _pbspro_netns_up && restart=1
    _pbspro_ns_files && restart=1
    _pbspro_conf "$prefix" && restart=1
    _pbspro_wrappers "$prefix"
    _pbspro_etc_hosts
    _pbspro_home "$prefix" && { _pbspro_alive mom && _pbspro_stop mom 10; fresh=1; }
    if [ -n "$restart" ]; then
        for d in $PBSPRO_DAEMONS postgres; do _pbspro_alive "$d" && { log "pbspro: restarting (configuration changed)"; break; }; done
        _pbspro_stop_all
        fresh=1
    fi
    _pbspro_datastore "$prefix" && create=1
    for d in $PBSPRO_DAEMONS; do _pbspro_alive "$d" || fresh=1; done
    _pbspro_start_all "$prefix" "$create"
    _pbspro_configure
    _pbspro_memory_hook && _pbspro_mom_hook_current "$prefix" && fresh=1
    [ -n "$create" ] && touch "$PBSPRO_HOME/.clustrix-created"

    # A smoke round when anything was (re)made or (re)started now, or the last round did not pass.
    [ -n "$fresh" ] && rm -f "$PBSPRO_DIR/smoke.passed"
    if [ ! -f "$PBSPRO_DIR/smoke.passed" ]; then
        wait_for 30 _pbspro_node_up || die "pbspro: node $PBSPRO_HOSTNAME is not free: $("$PBSPRO_BIN/pbsnodes" -a 2>&1 | head -5)"
        _pbspro_smoke
        touch "$PBSPRO_DIR/smoke.passed"
    fi

    mkdir -p "$STATE/jobs/pbs-pro"; chmod 0711 "$STATE/jobs/pbs-pro"
    # The backend tells the dialect from `qstat --version` ("pbs_version = ..."); say it only if not.
    "$PBSPRO_BIN/qstat" --version 2>&1 | grep -q '^pbs_version = ' || dialect='pbs_dialect = "pro"'
    {
        echo "[profiles.pbs-pro]"
        echo 'backend = "pbs"'
        echo "workdir = \"$STATE/jobs/pbs-pro\""
        echo "pbs_path = \"$PBSPRO_BIN\""
        [ -z "$dialect" ] || echo "$dialect"
    } | write_profile pbs-pro
    log "pbspro: up in $((SECONDS - t0))s (server $PBSPRO_HOSTNAME at $PBSPRO_NS_ADDR; commands in $PBSPRO_BIN)"
}

# _pbspro_node_up: the node is free (or busy with jobs), as pbsnodes from the host sees it.
_pbspro_node_up() {
    "$PBSPRO_BIN/pbsnodes" "$PBSPRO_HOSTNAME" 2>/dev/null | grep -Eq '^[[:space:]]*state = (free|job-busy)'
}

pbspro_down() {
    local pids
    _pbspro_delete_jobs
    _pbspro_stop_all
    # Whatever still lives in the namespace is ours (jobs the mom left, the server's datastore
    # monitor on its way out): end it by pid.
    if _pbspro_netns_works; then
        pids=$(_pbspro_ns_pids)
        if [ -n "$pids" ]; then
            log "pbspro: ending processes left in $PBSPRO_NETNS:$(for p in $pids; do printf ' %s(%s)' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done)"
            # shellcheck disable=SC2086
            kill $pids 2>/dev/null || true
            if ! wait_for 5 _pbspro_ns_empty; then
                # shellcheck disable=SC2046
                kill -9 $(_pbspro_ns_pids) 2>/dev/null || true
            fi
        fi
    fi
    ip netns del "$PBSPRO_NETNS" 2>/dev/null || true
    ip link del "$PBSPRO_VETH_HOST" 2>/dev/null || true
    _pbspro_etc_hosts_remove
    _pbspro_cgroups_remove
    rm -f "$PBSPRO_DIR/smoke.passed"
    remove_profiles pbs-pro
    log "pbspro: down (kept the build in $CACHE and PBS_HOME $PBSPRO_HOME)"
}

# _pbspro_delete_jobs: qdel every job that has not finished, so that none runs again at the next up
# (the server would requeue a running job whose mom went away). Finished jobs stay in the history.
_pbspro_delete_jobs() {
    local ids
    _pbspro_alive server || return 0
    ids=$(_pbspro_in_ns timeout 30 "$PBSPRO_BIN/qselect" 2>/dev/null | tr '\n' ' ')
    [ -n "${ids// /}" ] || return 0
    log "pbspro: deleting the jobs that have not finished: $ids"
    # shellcheck disable=SC2086
    _pbspro_in_ns timeout 30 "$PBSPRO_BIN/qdel" -W force $ids >/dev/null 2>&1 || true
    wait_for 20 _pbspro_no_jobs || log "pbspro: jobs still there after qdel: $(_pbspro_in_ns "$PBSPRO_BIN/qselect" 2>&1 | tr '\n' ' ')"
}

_pbspro_no_jobs() { [ -z "$(_pbspro_in_ns timeout 30 "$PBSPRO_BIN/qselect" 2>/dev/null)" ]; }

# _pbspro_ns_pids: the live processes (not zombies) in the namespace, on one line.
_pbspro_ns_pids() {
    local p out=""
    for p in $(ip netns pids "$PBSPRO_NETNS" 2>/dev/null); do pid_alive "$p" && out="$out $p"; done
    echo "${out# }"
}

_pbspro_ns_empty() { [ -z "$(_pbspro_ns_pids)" ]; }

# _pbspro_cgroups_remove: the cgroup hook's directories, now empty (rmdir only: a cgroup that still
# has tasks stays).
_pbspro_cgroups_remove() {
    local top=/sys/fs/cgroup/memory/$PBSPRO_CGROUP_PREFIX.service d
    [ -d "$top" ] || return 0
    for d in "$top"/jobid/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
    rmdir "$top/jobid" "$top" 2>/dev/null || true
}

pbspro_status() {
    local d down="" node mem
    if [ ! -x "$PBSPRO_BIN/qstat" ] || [ ! -f "$PBSPRO_CONF" ]; then
        echo "pbspro: down (not set up: no $PBSPRO_BIN/qstat or $PBSPRO_CONF)"
        return 1
    fi
    if [ "$(id -u)" = 0 ]; then
        for d in $PBSPRO_DAEMONS; do _pbspro_alive "$d" || down="$down $d"; done
        [ -z "$down" ] || { echo "pbspro: down (not running:$down)"; return 1; }
    fi
    if [ ! -e "/sys/class/net/$PBSPRO_VETH_HOST" ]; then
        echo "pbspro: down (no network namespace $PBSPRO_NETNS: no $PBSPRO_VETH_HOST)"
        return 1
    fi
    if ! timeout 20 "$PBSPRO_BIN/qstat" -B >/dev/null 2>&1; then
        echo "pbspro: down (the server at $PBSPRO_HOSTNAME does not answer qstat -B)"
        return 1
    fi
    node=$(timeout 20 "$PBSPRO_BIN/pbsnodes" "$PBSPRO_HOSTNAME" 2>/dev/null | sed -n 's/^[[:space:]]*state = //p')
    case "$node" in
        free|job-busy|job-exclusive) ;;
        *) echo "pbspro: down (node $PBSPRO_HOSTNAME is '${node:-unknown}')"; return 1;;
    esac
    if _pbspro_memcg; then mem="mem limits: cgroup hook"; else mem="no mem limits"; fi
    echo "pbspro: up (server $PBSPRO_HOSTNAME at $PBSPRO_NS_ADDR, node $node, queues $PBSPRO_QUEUES, $mem; pbs_path=$PBSPRO_BIN)"
}
