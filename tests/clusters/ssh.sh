# SSH test hosts for clustrix's ssh backend. Sourced after lib.sh; defines ssh_up, ssh_down, ssh_status,
# ssh_restart_local, ssh_restart_remote.
#
#   ssh-local   private sshd on 127.0.0.1:2222 (host network, same filesystem as the tests)
#   ssh-remote  private sshd on 10.254.77.2:22 inside the network namespace clustrix-t2, reached from
#               the host over the veth pair cxt2-host (10.254.77.1/30) <-> cxt2-ns (10.254.77.2/30).
#               Besides its own network it has its own /home/<user> and /tmp (bind mounts that exist
#               only in that sshd's mount namespace, backed by $STATE/ssh/remote-fs/), so a job on it
#               cannot silently see the test process's local files, and its own hostname (clustrix-t2,
#               not resolvable by name: use the address). /opt/clustrix-test is shared.
#
# Both sshds have their own ed25519 host keys in $STATE/ssh/<host>/ and accept only $TEST_USER with
# the key $STATE/keys/id_ed25519; $STATE/ssh/known_hosts holds both host keys so clients can verify
# them for real (StrictHostKeyChecking=yes). The far-side Python is /opt/clustrix-test/venv (Debian's
# python3 + cloudpickle + this checkout's clustrix-core, for code that imports clustrix inside a job).
# Down keeps keys, venv, user and remote-fs: the next up is fast.

SSH_DIR=$STATE/ssh
SSH_KEY=$STATE/keys/id_ed25519
SSH_PASSWORD_USER=cxpass
SSH_PASSWORD_FILE=$STATE/keys/cxpass.password
SSH_KNOWN_HOSTS=$SSH_DIR/known_hosts
SSH_VENV=/opt/clustrix-test/venv

SSH_LOCAL_ADDR=127.0.0.1
SSH_LOCAL_PORT=2222

SSH_NETNS=clustrix-t2
SSH_VETH_HOST=cxt2-host
SSH_VETH_NS=cxt2-ns
SSH_HOST_ADDR=10.254.77.1
SSH_REMOTE_ADDR=10.254.77.2
SSH_REMOTE_PORT=22
SSH_PREFIXLEN=30
SSH_REMOTE_HOSTNAME=clustrix-t2

# ---------------------------------------------------------------------------------------------------
# small helpers

_ssh_home() { getent passwd "$TEST_USER" | cut -d: -f6; }

# _ssh_sshd_alive NAME: the pid file names a live process that is an sshd (a stale pid file left by a
# reboot may name an unrelated process that reused the pid: never trust or kill that one).
_ssh_sshd_alive() {
    local pidfile="$STATE/run/$1.pid" pid
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    # /proc rather than kill -0: status runs without root too.
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]
}

# _ssh_forget_stale NAME: drop a pid file that does not name a live sshd (without killing anything).
_ssh_forget_stale() {
    _ssh_sshd_alive "$1" || rm -f "$STATE/run/$1.pid"
}

# _ssh_banner ADDR PORT: the port answers with an SSH banner.
_ssh_banner() {
    local banner
    # shellcheck disable=SC2016
    banner=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && head -c 8 <&3' "$1" "$2" 2>/dev/null) || true
    [[ $banner == SSH-2.0* ]]
}

# _ssh_client_cmd ADDR PORT CMD...: run CMD on a test host as the test user, verifying its host key.
_ssh_client_cmd() {
    local addr=$1 port=$2; shift 2
    ssh -i "$SSH_KEY" -p "$port" \
        -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes \
        -o ConnectTimeout=5 -o LogLevel=ERROR \
        "$TEST_USER@$addr" "$@"
}

# _ssh_known_hosts_name ADDR PORT: how known_hosts names ADDR:PORT.
_ssh_known_hosts_name() {
    if [ "$2" = 22 ]; then echo "$1"; else echo "[$1]:$2"; fi
}

# ---------------------------------------------------------------------------------------------------
# pieces of ssh_up

_ssh_user_and_key() {
    local home
    ensure_test_user
    home=$(_ssh_home)
    [ -n "$home" ] && [ -d "$home" ] || die "test user $TEST_USER has no home directory"
    # UsePAM no makes sshd refuse accounts whose password is locked ('!'), which is useradd's default.
    # '*' means "no password can match" without "locked": key login works, password login never does.
    if getent shadow "$TEST_USER" | cut -d: -f2 | grep -q '^!'; then
        usermod -p '*' "$TEST_USER"
    fi

    mkdir -p "$STATE/keys"
    chmod 700 "$STATE/keys"
    if [ ! -s "$SSH_KEY" ] || [ ! -s "$SSH_KEY.pub" ]; then
        rm -f "$SSH_KEY" "$SSH_KEY.pub"
        ssh-keygen -q -t ed25519 -N '' -C "clustrix-test-client" -f "$SSH_KEY" || die "ssh-keygen (client key) failed"
    fi
    chown root:root "$SSH_KEY" "$SSH_KEY.pub"
    chmod 600 "$SSH_KEY"
    chmod 644 "$SSH_KEY.pub"

    _ssh_install_authorized_key "$home"
    _ssh_password_user
}

# _ssh_password_user: a second test user who logs in with a generated password (kept root-only in
# $SSH_PASSWORD_FILE); tests hand it over the way CI secrets arrive, in $CLUSTRIX_SSH_PASSWORD.
_ssh_password_user() {
    id "$SSH_PASSWORD_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$SSH_PASSWORD_USER"
    if [ ! -s "$SSH_PASSWORD_FILE" ]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$SSH_PASSWORD_FILE")
    fi
    chmod 600 "$SSH_PASSWORD_FILE"
    echo "$SSH_PASSWORD_USER:$(cat "$SSH_PASSWORD_FILE")" | chpasswd
}

# _ssh_install_authorized_key HOME: HOME/.ssh/authorized_keys holds the client key, owned by the user.
_ssh_install_authorized_key() {
    local home=$1 pub
    pub=$(cat "$SSH_KEY.pub")
    install -d -m 700 -o "$TEST_USER" -g "$(id -gn "$TEST_USER")" "$home/.ssh"
    touch "$home/.ssh/authorized_keys"
    grep -qxF "$pub" "$home/.ssh/authorized_keys" || echo "$pub" >> "$home/.ssh/authorized_keys"
    chown "$TEST_USER:$(id -gn "$TEST_USER")" "$home/.ssh/authorized_keys"
    chmod 600 "$home/.ssh/authorized_keys"
    # StrictModes: the home itself must not be writable by group/others.
    chmod go-w "$home"
}

# _ssh_host_config NAME ADDR PORT: host key + sshd_config for one test host in $SSH_DIR/NAME/.
_ssh_host_config() {
    local name=$1 addr=$2 port=$3 dir="$SSH_DIR/$1"
    mkdir -p "$dir"
    chmod 755 "$SSH_DIR" "$dir"
    if [ ! -s "$dir/ssh_host_ed25519_key" ] || [ ! -s "$dir/ssh_host_ed25519_key.pub" ]; then
        rm -f "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "clustrix-test-$name" -f "$dir/ssh_host_ed25519_key" \
            || die "ssh-keygen (host key for $name) failed"
    fi
    chmod 600 "$dir/ssh_host_ed25519_key"
    cat > "$dir/sshd_config.tmp" <<EOF
# Written by tests/clusters/ssh.sh: private sshd of the test host $name. Do not edit; rewritten by up.
ListenAddress $addr
Port $port
HostKey $dir/ssh_host_ed25519_key
# start_daemon keeps the pid file ($STATE/run/$name.pid).
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
AllowUsers $TEST_USER $SSH_PASSWORD_USER
# No PAM stack to speak of without systemd; see _ssh_user_and_key for the locked-password issue.
UsePAM no
StrictModes yes
UseDNS no
X11Forwarding no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
# Tests open many short connections at once (and ControlMaster multiplexing).
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel INFO
# The one account that logs in with a password, to test password auth and its lookup for real.
Match User $SSH_PASSWORD_USER
    PasswordAuthentication yes
EOF
    /usr/sbin/sshd -t -f "$dir/sshd_config.tmp" || die "sshd rejects $dir/sshd_config.tmp"
    if cmp -s "$dir/sshd_config.tmp" "$dir/sshd_config"; then
        rm -f "$dir/sshd_config.tmp"
    else
        mv "$dir/sshd_config.tmp" "$dir/sshd_config"
        # A running sshd still has the old config: have _ssh_start_* restart it.
        _ssh_forget_stale "$name"
        daemon_alive "$name" && { log "$name: sshd_config changed, restarting sshd"; stop_daemon "$name"; }
    fi
    return 0
}

_ssh_netns_works() { ip netns exec "$SSH_NETNS" true 2>/dev/null; }

# _ssh_netns_up: namespace + veth pair + addresses; every step is safe to repeat.
_ssh_netns_up() {
    if ! _ssh_netns_works; then
        # Missing, or a stale /run/netns entry (e.g. left on a disk-backed /run by a reboot).
        ip netns del "$SSH_NETNS" 2>/dev/null || true
        ip link del "$SSH_VETH_HOST" 2>/dev/null || true
        # An sshd still running in a namespace that is gone is unreachable: stop it.
        _ssh_forget_stale ssh-remote
        stop_daemon ssh-remote
        ip netns add "$SSH_NETNS" \
            || die "cannot create network namespace $SSH_NETNS (needs CAP_SYS_ADMIN and iproute2): no ssh-remote host"
    fi
    if ! ip netns exec "$SSH_NETNS" ip link show "$SSH_VETH_NS" >/dev/null 2>&1 \
        || ! ip link show "$SSH_VETH_HOST" >/dev/null 2>&1; then
        ip link del "$SSH_VETH_HOST" 2>/dev/null || true
        ip netns exec "$SSH_NETNS" ip link del "$SSH_VETH_NS" 2>/dev/null || true
        ip link add "$SSH_VETH_HOST" type veth peer name "$SSH_VETH_NS" netns "$SSH_NETNS" \
            || die "cannot create veth pair $SSH_VETH_HOST/$SSH_VETH_NS"
    fi
    ip addr replace "$SSH_HOST_ADDR/$SSH_PREFIXLEN" dev "$SSH_VETH_HOST"
    ip link set "$SSH_VETH_HOST" up
    ip netns exec "$SSH_NETNS" ip link set lo up
    ip netns exec "$SSH_NETNS" ip addr replace "$SSH_REMOTE_ADDR/$SSH_PREFIXLEN" dev "$SSH_VETH_NS"
    ip netns exec "$SSH_NETNS" ip link set "$SSH_VETH_NS" up
    # No default route inside: the namespace can reach the host side of the /30 and nothing else.
}

# _ssh_remote_fs: the remote host's own /home/<user> and /tmp, kept across down/up.
_ssh_remote_fs() {
    local rhome="$SSH_DIR/remote-fs/home" rtmp="$SSH_DIR/remote-fs/tmp" group
    group=$(id -gn "$TEST_USER")
    mkdir -p "$SSH_DIR/remote-fs"
    chmod 755 "$SSH_DIR/remote-fs"
    if [ ! -d "$rhome" ]; then
        mkdir -p "$rhome"
        cp -a /etc/skel/. "$rhome/" 2>/dev/null || true
        chown -R "$TEST_USER:$group" "$rhome"
    fi
    chown "$TEST_USER:$group" "$rhome"
    chmod 750 "$rhome"
    install -d -m 1777 "$rtmp"
    _ssh_install_authorized_key "$rhome"
}

_ssh_start_local() {
    mkdir -p /run/sshd && chmod 755 /run/sshd
    _ssh_forget_stale ssh-local
    start_daemon ssh-local /usr/sbin/sshd -D -e -f "$SSH_DIR/ssh-local/sshd_config"
    wait_for 10 _ssh_banner "$SSH_LOCAL_ADDR" "$SSH_LOCAL_PORT" \
        || die "ssh-local: sshd does not answer on $SSH_LOCAL_ADDR:$SSH_LOCAL_PORT (see $STATE/log/ssh-local.log)"
}

_ssh_start_remote() {
    local home
    home=$(_ssh_home)
    mkdir -p /run/sshd && chmod 755 /run/sshd
    _ssh_forget_stale ssh-remote
    # ip netns exec, unshare (no --fork) and sh all exec: the pid start_daemon records is sshd's.
    start_daemon ssh-remote ip netns exec "$SSH_NETNS" \
        unshare --mount --uts --propagation private \
        /bin/sh -c 'hostname "$1" && mount --bind "$2" "$3" && mount --bind "$4" /tmp && exec /usr/sbin/sshd -D -e -f "$5"' \
        sh "$SSH_REMOTE_HOSTNAME" "$SSH_DIR/remote-fs/home" "$home" "$SSH_DIR/remote-fs/tmp" "$SSH_DIR/ssh-remote/sshd_config"
    wait_for 10 _ssh_banner "$SSH_REMOTE_ADDR" "$SSH_REMOTE_PORT" \
        || die "ssh-remote: sshd does not answer on $SSH_REMOTE_ADDR:$SSH_REMOTE_PORT (see $STATE/log/ssh-remote.log)"
}

# _ssh_known_hosts: built from the generated host public keys, then cross-checked with ssh-keyscan.
_ssh_known_hosts() {
    {
        echo "$(_ssh_known_hosts_name "$SSH_LOCAL_ADDR" "$SSH_LOCAL_PORT") $(cut -d' ' -f1,2 "$SSH_DIR/ssh-local/ssh_host_ed25519_key.pub")"
        echo "$(_ssh_known_hosts_name "$SSH_REMOTE_ADDR" "$SSH_REMOTE_PORT") $(cut -d' ' -f1,2 "$SSH_DIR/ssh-remote/ssh_host_ed25519_key.pub")"
    } > "$SSH_KNOWN_HOSTS.tmp"
    chmod 644 "$SSH_KNOWN_HOSTS.tmp"
    mv "$SSH_KNOWN_HOSTS.tmp" "$SSH_KNOWN_HOSTS"
}

_ssh_keyscan_check() {
    local addr=$1 port=$2 name=$3 seen want
    want=$(cut -d' ' -f1,2 "$SSH_DIR/$name/ssh_host_ed25519_key.pub")
    seen=$(ssh-keyscan -T 5 -t ed25519 -p "$port" "$addr" 2>/dev/null | awk '!/^#/ {print $2" "$3}')
    [ "$seen" = "$want" ] || die "$name: the host key served on $addr:$port is not the generated one (got '${seen:-nothing}')"
}

_ssh_venv() {
    local py=$SSH_VENV/bin/python
    [ -x /usr/bin/python3 ] || die "/usr/bin/python3 missing"
    if [ -x "$py" ] && "$py" -c 'import cloudpickle' 2>/dev/null; then
        return 0
    fi
    log "creating far-side venv $SSH_VENV with cloudpickle"
    ( umask 022
      mkdir -p "$(dirname "$SSH_VENV")"
      [ -x "$py" ] || /usr/bin/python3 -m venv "$SSH_VENV" || die "python3 -m venv $SSH_VENV failed"
      "$py" -m pip install -q --disable-pip-version-check --upgrade cloudpickle \
          || die "pip install cloudpickle into $SSH_VENV failed" )
    chmod -R a+rX "$(dirname "$SSH_VENV")"
}

# _ssh_venv_core: the checkout's clustrix-core in the far-side venv, for code that imports clustrix inside a
# job (clustrix.pmap). Reinstalled only when the checkout's core differs from the one installed last time.
_ssh_venv_core() {
    local core stamp want
    core=$(cd "$HERE/../../clustrix-core" && pwd) || die "no clustrix-core next to tests/clusters"
    stamp=$SSH_VENV/.clustrix-core.sha256
    want=$(cd "$core" && find pyproject.toml src -type f -not -path '*/__pycache__/*' | LC_ALL=C sort \
        | xargs sha256sum | sha256sum | cut -d' ' -f1)
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    log "installing $core into the far-side venv $SSH_VENV"
    ( umask 022
      "$SSH_VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$core" \
          && "$SSH_VENV/bin/python" -m pip install -q --disable-pip-version-check "$core" ) \
        || die "pip install $core into $SSH_VENV failed"
    chmod -R a+rX "$SSH_VENV"
    echo "$want" > "$stamp"
}

_ssh_profiles() {
    write_profile ssh-local <<EOF
[profiles.ssh-local]
backend = "ssh"
host = "$SSH_LOCAL_ADDR"
port = $SSH_LOCAL_PORT
user = "$TEST_USER"
identity_file = "$SSH_KEY"
known_hosts = "$SSH_KNOWN_HOSTS"
workdir = "$(_ssh_home)/clustrix-jobs"
python = "$SSH_VENV/bin/python"

EOF
    write_profile ssh-password <<EOF
[profiles.ssh-password]
backend = "ssh"
host = "$SSH_LOCAL_ADDR"
port = $SSH_LOCAL_PORT
user = "$SSH_PASSWORD_USER"
known_hosts = "$SSH_KNOWN_HOSTS"
workdir = "clustrix-jobs"
python = "$SSH_VENV/bin/python"

EOF
    write_profile ssh-remote <<EOF
[profiles.ssh-remote]
backend = "ssh"
host = "$SSH_REMOTE_ADDR"
port = $SSH_REMOTE_PORT
user = "$TEST_USER"
identity_file = "$SSH_KEY"
known_hosts = "$SSH_KNOWN_HOSTS"
workdir = "$(_ssh_home)/clustrix-jobs"
python = "$SSH_VENV/bin/python"

EOF
}

# _ssh_verify NAME ADDR PORT: key login with strict host key checking, and the far-side Python works.
_ssh_verify() {
    local name=$1 addr=$2 port=$3 out
    out=$(_ssh_client_cmd "$addr" "$port" "$SSH_VENV/bin/python" -c \
        "'import cloudpickle, getpass; print(getpass.getuser(), cloudpickle.__version__)'" 2>&1) \
        || die "$name: 'ssh -p $port $TEST_USER@$addr $SSH_VENV/bin/python -c \"import cloudpickle\"' failed: $out"
    log "$name: ok ($addr:$port, user/cloudpickle: $out)"
}

# ---------------------------------------------------------------------------------------------------
# the contract

ssh_up() {
    ensure_packages openssh-server openssh-client openssh-sftp-server iproute2 util-linux \
        python3 python3-venv
    command -v ssh-keyscan >/dev/null || die "ssh-keyscan missing"
    mkdir -p "$SSH_DIR"
    # sshd's privilege separation directory (even sshd -t wants it); /run may be fresh after a reboot.
    mkdir -p /run/sshd && chmod 755 /run/sshd

    _ssh_user_and_key
    _ssh_venv
    _ssh_venv_core

    _ssh_host_config ssh-local "$SSH_LOCAL_ADDR" "$SSH_LOCAL_PORT"
    _ssh_host_config ssh-remote "$SSH_REMOTE_ADDR" "$SSH_REMOTE_PORT"
    _ssh_known_hosts

    _ssh_start_local

    _ssh_netns_up
    _ssh_remote_fs
    _ssh_start_remote

    _ssh_keyscan_check "$SSH_LOCAL_ADDR" "$SSH_LOCAL_PORT" ssh-local
    _ssh_keyscan_check "$SSH_REMOTE_ADDR" "$SSH_REMOTE_PORT" ssh-remote
    _ssh_verify ssh-local "$SSH_LOCAL_ADDR" "$SSH_LOCAL_PORT"
    _ssh_verify ssh-remote "$SSH_REMOTE_ADDR" "$SSH_REMOTE_PORT"

    _ssh_profiles
    log "ssh: profiles ssh-local, ssh-remote, ssh-password in $STATE/clustrix.toml"
}

ssh_down() {
    _ssh_forget_stale ssh-local
    _ssh_forget_stale ssh-remote
    stop_daemon ssh-local
    stop_daemon ssh-remote
    # Deleting the namespace also deletes the veth pair; the explicit del covers half-built states.
    ip netns del "$SSH_NETNS" 2>/dev/null || true
    ip link del "$SSH_VETH_HOST" 2>/dev/null || true
    remove_profiles ssh-local ssh-remote ssh-password
    log "ssh: down (kept $STATE/keys, $SSH_DIR, $SSH_VENV and user $TEST_USER)"
}

ssh_status() {
    local rc=0 name addr port pid
    for name in ssh-local ssh-remote; do
        if [ "$name" = ssh-local ]; then addr=$SSH_LOCAL_ADDR port=$SSH_LOCAL_PORT
        else addr=$SSH_REMOTE_ADDR port=$SSH_REMOTE_PORT; fi
        if _ssh_sshd_alive "$name" && _ssh_banner "$addr" "$port"; then
            pid=$(cat "$STATE/run/$name.pid")
            echo "$name up $addr:$port (pid $pid)"
        else
            echo "$name down $addr:$port"
            rc=1
        fi
    done
    return $rc
}

# ssh_restart_local / ssh_restart_remote: stop and start a test host's sshd listener (by pid), e.g.
# while a job runs. Sessions already open are separate processes (sshd forks and setsid()s each
# connection) and survive; detached jobs (setsid) survive as well.
ssh_restart_local() {
    _ssh_forget_stale ssh-local
    stop_daemon ssh-local
    _ssh_start_local
    log "ssh-local: sshd restarted (pid $(cat "$STATE/run/ssh-local.pid"))"
}

ssh_restart_remote() {
    _ssh_netns_works || die "ssh-remote: network namespace $SSH_NETNS is missing; run tests/clusters/up ssh"
    _ssh_forget_stale ssh-remote
    stop_daemon ssh-remote
    _ssh_start_remote
    log "ssh-remote: sshd restarted (pid $(cat "$STATE/run/ssh-remote.pid"))"
}
