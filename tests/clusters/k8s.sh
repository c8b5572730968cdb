# A real single-node Kubernetes 1.20 for clustrix's kubernetes backend (sourced by up/down/status; see lib.sh).
#
# Everything comes from Debian: kube-apiserver, kube-controller-manager, kube-scheduler and kubelet are
# built from Debian's own `kubernetes` source package (Debian ships only kubectl); etcd, containerd,
# runc and the CNI plugins are Debian packages. No registry is ever asked for an image: the pause and
# Python images are built here and imported into containerd.
#
#   etcd                  http://127.0.0.1:12379 (peer 12380), data in $STATE/k8s/etcd
#   kube-apiserver        https://127.0.0.1:16443, TLS from $STATE/k8s/pki, static tokens, Node,RBAC
#   controller-manager    https://127.0.0.1:16257 (healthz only)    scheduler  https://127.0.0.1:16259
#   containerd            $STATE/k8s/containerd/containerd.sock, its own root/state dirs
#   kubelet               node "localhost" with node IP 10.244.0.1 (the pod bridge: the kubelet
#                         refuses a loopback node IP), API 10.244.0.1:16250 (client certificates of
#                         our CA only), healthz 127.0.0.1:16248
#   pods                  bridge cxk8s0, 10.244.0.0/24, no masquerade and no default route: a pod
#                         reaches other pods and the bridge address 10.244.0.1, nothing else; its
#                         resolv.conf names 127.0.0.1, so not even a DNS query leaves it.
#   services              10.245.0.0/24, but there is no kube-proxy and no cluster DNS: nothing
#                         answers on a service IP (KUBERNETES_SERVICE_HOST=10.245.0.1 in pods leads
#                         nowhere), so pods cannot reach the API server.
#
# For the tests: $STATE/k8s/kubeconfig (cluster-admin, token), $STATE/k8s/kubeconfig-tester (rights in
# clustrix-test only), namespaces clustrix-test and clustrix-other, and the fixtures described at
# _k8s_fixtures. Profile "kubernetes". Logs: $STATE/log/k8s-*.log, $STATE/k8s/{build,image}.log.
#
# Cached outside the checkout in $CACHE (CLUSTRIX_TEST_CACHE, default /var/cache/clustrix-test)
# and kept by `down`, keyed by what they are built from:
#   $CACHE/k8s-<source version>/bin/   the five binaries (kubectl from Debian's kubernetes-client)
#   $CACHE/images/*.tar                OCI image tars of the pause and Python images
#   $CACHE/apt-src/                    private apt config + lists used to fetch the sources
# `down` stops every daemon by pid, removes the pods first (so containerd's shims, mounts and network
# namespaces go cleanly), and empties etcd and the volume: the next `up` gives a fresh cluster with
# the same credentials.

K8S_DIR=$STATE/k8s
K8S_APT=$CACHE/apt-src

K8S_ETCD_PORT=12379
K8S_ETCD_PEER_PORT=12380
K8S_API_PORT=16443
K8S_CM_PORT=16257
K8S_SCHED_PORT=16259
K8S_KUBELET_PORT=16250
K8S_KUBELET_HEALTHZ_PORT=16248

K8S_NODE=localhost
K8S_POD_SUBNET=10.244.0.0/24
K8S_POD_GATEWAY=10.244.0.1
K8S_SERVICE_RANGE=10.245.0.0/24
K8S_SERVICE_IP=10.245.0.1
K8S_BRIDGE=cxk8s0
K8S_CNI_NAME=clustrix-k8s

K8S_PAUSE_IMAGE=clustrix.test/pause:1
K8S_PYTHON_IMAGE=clustrix.test/python:3
# What the Python image holds; part of its cache key.
K8S_PYTHON_PACKAGES=python3,python3-numpy,python3-cloudpickle

K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet"
K8S_DAEMONS="k8s-etcd k8s-containerd k8s-apiserver k8s-controller-manager k8s-scheduler k8s-kubelet"

# ---------------------------------------------------------------------------------------------------
# small helpers

# _k8s_comm NAME: the command name a daemon's process must have (a stale pid file after a reboot may
# name an unrelated process: never trust or kill that one).
_k8s_comm() {
    case $1 in
        k8s-etcd) echo etcd ;;
        k8s-containerd) echo containerd ;;
        k8s-apiserver) echo kube-apiserver ;;
        # comm is cut at 15 characters
        k8s-controller-manager) echo kube-controller ;;
        k8s-scheduler) echo kube-scheduler ;;
        k8s-kubelet) echo kubelet ;;
    esac
}

_k8s_alive() {
    local pidfile="$STATE/run/$1.pid" pid
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(_k8s_comm "$1")" ] && pid_alive "$pid"
}

# _k8s_start NAME CMD...: start_daemon unless that daemon runs already; 0 when started now.
_k8s_start() {
    local name=$1; shift
    _k8s_alive "$name" && return 1
    rm -f "$STATE/run/$name.pid"
    start_daemon "$name" "$@"
    return 0
}

# _k8s_stop NAME [SECONDS]: stop one daemon of ours by its pid, TERM then KILL. The API server keeps
# nothing itself (etcd does) but often lingers on TERM waiting for connections: it gets 5 s.
_k8s_stop() {
    local name=$1 limit=${2:-15} pidfile="$STATE/run/$1.pid" pid
    [ -n "${2:-}" ] || [ "$name" != k8s-apiserver ] || limit=5
    if ! _k8s_alive "$name"; then rm -f "$pidfile"; return 0; fi
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq $((limit * 10))); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
        [ "$name" = k8s-apiserver ] || log "k8s: $name (pid $pid) did not stop in ${limit}s, killing it"
        kill -9 "$pid" 2>/dev/null || true
        wait_for 5 sh -c "! kill -0 $pid" || true
    fi
    rm -f "$pidfile"
}

_k8s_kubectl() { "$(_k8s_bindir)/kubectl" --kubeconfig "$K8S_DIR/kubeconfig" --request-timeout=20s "$@"; }
_k8s_ctr() { ctr --address "$K8S_DIR/containerd/containerd.sock" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------------
# binaries: Debian's kubernetes source package, built once per source version

# _k8s_apt ARGS...: apt-get/apt-cache with a private config whose only sources are the machine's own
# Debian sources (/etc/apt/sources.list.d/debian.sources) as deb-src and deb, read at run time: no
# mirror is named anywhere in the checkout. Its lists live in the cache, apart from the system's.
_k8s_apt() {
    local tool=$1; shift
    "$tool" -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$K8S_APT/sources.list.d" \
        -o Dir::State::Lists="$K8S_APT/lists" -o Dir::Cache="$K8S_APT/cache" \
        -o APT::Sandbox::User=root "$@"
}

_k8s_apt_setup() {
    local sources=/etc/apt/sources.list.d/debian.sources
    [ -r "$sources" ] || die "k8s: $sources missing: cannot derive where Debian's sources come from"
    mkdir -p "$K8S_APT/sources.list.d" "$K8S_APT/lists/partial" "$K8S_APT/cache/archives/partial"
    sed -E 's/^Types:.*/Types: deb deb-src/' "$sources" | write_if_changed "$K8S_APT/sources.list.d/debian.sources" 0644 \
        && rm -f "$K8S_APT/lists"/*Sources* "$K8S_APT/lists"/*Packages*
    if ! ls "$K8S_APT/lists"/*Sources* >/dev/null 2>&1; then
        _k8s_apt apt-get update >"$K8S_DIR/apt-src.log" 2>&1 \
            || die "k8s: apt-get update with deb-src failed (see $K8S_DIR/apt-src.log)"
    fi
}

# The source version the binaries are built from (and cached under).
_k8s_version() {
    [ -n "${_K8S_VERSION:-}" ] || _K8S_VERSION=$(_k8s_apt apt-cache showsrc kubernetes 2>/dev/null \
        | sed -n 's/^Version: //p' | sort -V | tail -1)
    [ -n "$_K8S_VERSION" ] || die "k8s: no 'kubernetes' source package in the deb-src lists"
    echo "$_K8S_VERSION"
}

_k8s_bindir() { echo "$CACHE/k8s-$(_k8s_version)/bin"; }

# _k8s_build: fetch, patch and build the server binaries into the cache (run in the background; the
# log is $K8S_DIR/build.log). Two changes to the source, both also needed by anyone building it here:
#   - vendored reflect2 1.0.1 breaks with Go >= 1.18: use Debian's golang-github-modern-go-reflect2-dev;
#   - the kubelet links the in-tree AWS/GCP/Azure image credential providers, whose lookups go to the
#     cloud metadata address: drop them (the kubelet never pulls here anyway).
_k8s_build() {
    local ver bindir work src b
    ver=$(_k8s_version)
    bindir=$(_k8s_bindir)
    work=$CACHE/k8s-build
    rm -rf "$work"
    mkdir -p "$work"
    log "k8s: building $K8S_BINARIES from Debian's kubernetes $ver (takes ~7 min on 2 cores)"
    ( cd "$work" && _k8s_apt apt-get source --download-only "kubernetes=$ver" ) \
        || die "k8s: apt-get source kubernetes=$ver failed"
    # apt-get source checked the files against the signed Sources index; the .dsc's own signature
    # is by a key that is not in any keyring here.
    dpkg-source --no-check -x "$work"/kubernetes_*.dsc "$work/src" >/dev/null \
        || die "k8s: dpkg-source -x failed"
    src=$work/src

    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
    sed -i -E '/"k8s.io\/kubernetes\/pkg\/credentialprovider\/(aws|azure|gcp)"/d' "$src/cmd/kubelet/app/plugins.go"
    sed -i -E '/"k8s.io\/kubernetes\/pkg\/credentialprovider\/gcp"/d' "$src/cmd/kubelet/app/options/globalflags.go"

    # As debian/rules does: GOPATH mode through a symlink, no cgo, nothing fetched.
    mkdir -p "$src/.go/src/k8s.io"
    ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
    local goenv=(env HOME="$work/home" GOPATH="$src/.go" GOCACHE="$work/gocache" GO111MODULE=off
        GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOLDFLAGS="-s -w" PATH="/usr/lib/go/bin:$PATH")
    if (cd "$src/.go/src/k8s.io/kubernetes" && "${goenv[@]}" go list -deps ./cmd/kubelet) \
            | grep -E 'pkg/credentialprovider/(aws|gcp)$'; then
        die "k8s: the patched kubelet still links a cloud credential provider"
    fi
    ( cd "$src" && "${goenv[@]}" make WHAT="$(for b in $K8S_BINARIES; do printf 'cmd/%s ' "$b"; done)" ) \
        || die "k8s: building the kubernetes binaries failed"

    mkdir -p "$bindir"
    for b in $K8S_BINARIES; do
        install -m 0755 "$src/_output/bin/$b" "$bindir/.$b.tmp"
        mv "$bindir/.$b.tmp" "$bindir/$b"
    done
    rm -rf "$work"
    log "k8s: built $K8S_BINARIES into $bindir"
}

# _k8s_kubectl_bin: kubectl of the same version from Debian's binary package, unpacked into the cache
# (installing kubernetes-client could clash with a kubectl that the machine has from elsewhere).
_k8s_kubectl_bin() {
    local bindir tmp; bindir=$(_k8s_bindir)
    [ -x "$bindir/kubectl" ] && return 0
    tmp=$(mktemp -d "$CACHE/kubectl.XXXXXX")
    ( cd "$tmp" && _k8s_apt apt-get download "kubernetes-client=$(_k8s_version)" ) >"$K8S_DIR/kubectl.log" 2>&1 \
        || die "k8s: apt-get download kubernetes-client failed (see $K8S_DIR/kubectl.log)"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tmp/x"
    mkdir -p "$bindir"
    install -m 0755 "$tmp/x/usr/bin/kubectl" "$bindir/kubectl"
    rm -rf "$tmp"
}

# ---------------------------------------------------------------------------------------------------
# images: no registry, so the pause and Python images are built here as OCI archives

# _k8s_mirror: the Debian mirror of this machine's own apt sources (for debootstrap), read at run time.
_k8s_mirror() {
    awk '/^URIs:/ {u=$2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == "bookworm") s=1}
         /^$/ {if (s && u) {print u; exit} u=""; s=0} END {if (s && u) print u}' \
        /etc/apt/sources.list.d/debian.sources | head -1
}

_k8s_image_tar() {
    local what=$1 key
    case $what in
        pause) key=$(cat "$HERE/k8s/pause.c" "$HERE/k8s/oci-image.py" | sha256sum | cut -c1-12) ;;
        python) key=$(printf 'bookworm minbase %s\n' "$K8S_PYTHON_PACKAGES" | cat - "$HERE/k8s/oci-image.py" \
            | sha256sum | cut -c1-12) ;;
    esac
    echo "$CACHE/images/$what-$key.tar"
}

_k8s_build_pause() {
    local out work
    out=$(_k8s_image_tar pause)
    [ -s "$out" ] && return 0
    work=$(mktemp -d "$CACHE/images/pause.XXXXXX")
    mkdir -p "$work/rootfs"
    gcc -Os -static -o "$work/rootfs/pause" "$HERE/k8s/pause.c" || die "k8s: cannot build pause (gcc -static)"
    strip "$work/rootfs/pause"
    tar --numeric-owner --owner=0 --group=0 -C "$work/rootfs" -cf "$work/layer.tar" ./pause
    python3 "$HERE/k8s/oci-image.py" "$work/layer.tar" "$K8S_PAUSE_IMAGE" "$out" --entrypoint /pause \
        || die "k8s: cannot write the pause image"
    rm -rf "$work"
}

# _k8s_build_python: Debian bookworm minbase + python3, numpy, cloudpickle (~1 min; log in $K8S_DIR/image.log).
_k8s_build_python() {
    local out work mirror
    out=$(_k8s_image_tar python)
    [ -s "$out" ] && return 0
    mirror=$(_k8s_mirror)
    [ -n "$mirror" ] || die "k8s: no bookworm source in /etc/apt/sources.list.d/debian.sources for debootstrap"
    log "k8s: building the image $K8S_PYTHON_IMAGE (debootstrap bookworm + $K8S_PYTHON_PACKAGES)"
    work=$(mktemp -d "$CACHE/images/python.XXXXXX")
    debootstrap --variant=minbase --include="$K8S_PYTHON_PACKAGES" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg bookworm "$work/rootfs" "$mirror" \
        || die "k8s: debootstrap failed (see $K8S_DIR/image.log)"
    # Nothing host-specific in the image; the kubelet provides resolv.conf and hostname.
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
        "$work/rootfs/var/log/"*.log "$work/rootfs/etc/apt/sources.list" \
        "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
    chroot "$work/rootfs" python3 -c 'import cloudpickle, numpy' || die "k8s: the Python image lacks cloudpickle/numpy"
    tar --numeric-owner --xattrs --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -C "$work/rootfs" -cf "$work/layer.tar" . || die "k8s: cannot tar the Python rootfs"
    python3 "$HERE/k8s/oci-image.py" "$work/layer.tar" "$K8S_PYTHON_IMAGE" "$out" --cmd python3 \
        || die "k8s: cannot write the Python image"
    # debootstrap unmounts the /proc and /sys it mounted in the target; make sure before rm -rf.
    _k8s_unmount "$work"
    _k8s_mounted "$work" || rm -rf "$work"
}

# _k8s_import NAME TAR: import into containerd's k8s.io namespace unless that very archive was imported.
_k8s_import() {
    local name=$1 tar=$2 mark="$K8S_DIR/containerd/imported-${1//[\/:]/_}"
    if [ "$(cat "$mark" 2>/dev/null)" = "$(basename "$tar")" ] && _k8s_ctr images ls -q | grep -qxF "$name"; then
        return 0
    fi
    _k8s_ctr images import "$tar" >/dev/null || die "k8s: ctr images import $tar failed"
    _k8s_ctr images ls -q | grep -qxF "$name" || die "k8s: $name is not in containerd after importing $tar"
    basename "$tar" > "$mark"
}

# ---------------------------------------------------------------------------------------------------
# credentials: a CA, TLS certificates, the service account key pair and static bearer tokens

# _k8s_cert NAME CN ORG USAGE [SAN]: a key + certificate signed by the cluster CA, kept once made.
_k8s_cert() {
    local name=$1 cn=$2 org=$3 usage=$4 san=${5:-} pki=$K8S_DIR/pki
    if [ -s "$pki/$name.crt" ] && [ -s "$pki/$name.key" ] \
        && [ "$(cat "$pki/$name.spec" 2>/dev/null)" = "$cn|$org|$usage|$san" ]; then
        return 0
    fi
    openssl ecparam -genkey -name prime256v1 -noout -out "$pki/$name.key" 2>/dev/null
    openssl req -new -key "$pki/$name.key" -subj "/CN=$cn${org:+/O=$org}" -out "$pki/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usage"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } > "$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null \
        || die "k8s: cannot sign the $name certificate"
    rm -f "$pki/$name.csr" "$pki/$name.ext"
    echo "$cn|$org|$usage|$san" > "$pki/$name.spec"
}

_k8s_token() {
    local f=$K8S_DIR/pki/token-$1
    [ -s "$f" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f")
    cat "$f"
}

_k8s_pki() {
    local pki=$K8S_DIR/pki
    mkdir -p "$pki"; chmod 700 "$pki"
    if [ ! -s "$pki/ca.crt" ] || [ ! -s "$pki/ca.key" ]; then
        rm -f "$pki"/*.crt "$pki"/*.key
        openssl ecparam -genkey -name prime256v1 -noout -out "$pki/ca.key" 2>/dev/null
        openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=clustrix-test-k8s-ca" -days 3650 -sha256 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
            -out "$pki/ca.crt" 2>/dev/null || die "k8s: cannot make the CA"
    fi
    _k8s_cert apiserver kube-apiserver "" serverAuth \
        "IP:127.0.0.1,IP:$K8S_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    _k8s_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
    _k8s_cert kubelet "system:node:$K8S_NODE" system:nodes serverAuth "IP:$K8S_POD_GATEWAY,IP:127.0.0.1,DNS:$K8S_NODE"
    if [ ! -s "$pki/sa.key" ] || [ ! -s "$pki/sa.pub" ]; then
        openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
        openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    fi
    # token,user,uid,"groups": the users the API server knows (RBAC gives them their rights).
    write_if_changed "$pki/tokens.csv" 0600 <<EOT || true
$(_k8s_token admin),clustrix-admin,clustrix-admin,"system:masters"
$(_k8s_token tester),clustrix-tester,clustrix-tester
$(_k8s_token kubelet),system:node:$K8S_NODE,kubelet,"system:nodes"
$(_k8s_token controller-manager),system:kube-controller-manager,kube-controller-manager
$(_k8s_token scheduler),system:kube-scheduler,kube-scheduler
EOT
    chmod 600 "$pki"/*.key
}

# _k8s_kubeconfig FILE TOKEN-NAME: a kubeconfig for https://127.0.0.1:$K8S_API_PORT with the CA inline.
_k8s_kubeconfig() {
    write_if_changed "$1" 0600 <<EOT || true
apiVersion: v1
kind: Config
clusters:
- name: clustrix-test
  cluster:
    server: https://127.0.0.1:$K8S_API_PORT
    certificate-authority-data: $(base64 -w0 < "$K8S_DIR/pki/ca.crt")
users:
- name: $2
  user:
    token: $(_k8s_token "$2")
contexts:
- name: clustrix-test
  context:
    cluster: clustrix-test
    user: $2
    namespace: ${3:-default}
current-context: clustrix-test
EOT
}

# ---------------------------------------------------------------------------------------------------
# configuration files

_k8s_containerd_config() {
    local c=$K8S_DIR/containerd
    write_if_changed "$c/config.toml" 0644 <<EOT
# Written by tests/clusters/k8s.sh: the test cluster's own containerd (nothing shared with a system one).
version = 2
root = "$c/root"
state = "$c/state"
# Plugins that would write outside our directories or are of no use here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$c/containerd.sock"

[ttrpc]
  address = "$c/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  # This machine's root lacks CAP_SYS_RESOURCE: without this every sandbox fails to start
  # ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  # Network namespaces of pods under our state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$c/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_DIR/cni/net.d"
    max_conf_num = 1
EOT
}

# The pod network: a bridge with the gateway address (so the kubelet can reach pods, e.g. for probes)
# but no default route in the pods and no masquerade: pod traffic stays on 10.244.0.0/24.
_k8s_cni_config() {
    write_if_changed "$K8S_DIR/cni/net.d/10-$K8S_CNI_NAME.conflist" 0644 <<EOT
{
  "cniVersion": "0.4.0",
  "name": "$K8S_CNI_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$K8S_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$K8S_POD_SUBNET", "gateway": "$K8S_POD_GATEWAY"}]],
        "routes": [],
        "dataDir": "$K8S_DIR/cni/ipam"
      }
    }
  ]
}
EOT
}

_k8s_kubelet_config() {
    # Pods get a resolver that does not exist rather than the host's: no lookup leaves the pod.
    write_if_changed "$K8S_DIR/kubelet/resolv.conf" 0644 <<EOT || true
nameserver 127.0.0.1
options timeout:1 attempts:1
EOT
    write_if_changed "$K8S_DIR/kubelet/config.yaml" 0644 <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_POD_GATEWAY
port: $K8S_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $K8S_KUBELET_HEALTHZ_PORT
tlsCertFile: $K8S_DIR/pki/kubelet.crt
tlsPrivateKeyFile: $K8S_DIR/pki/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $K8S_DIR/pki/ca.crt
# Only holders of a certificate from our CA (the API server) get in at all.
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failSwapOn: false
resolvConf: $K8S_DIR/kubelet/resolv.conf
# Never collect our imported images (they cannot be pulled back) and never evict for a full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
serializeImagePulls: false
maxPods: 60
# Pod status and deletions show up faster than with the defaults (tests wait on them).
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
EOT
}

# ---------------------------------------------------------------------------------------------------
# daemons

# _k8s_daemon NAME CMD...: start it, or restart it when its command line changed since it was started.
# 0 when it was (re)started now.
_k8s_daemon() {
    local name=$1; shift
    if printf '%s\n' "$@" | write_if_changed "$K8S_DIR/args/$name" 0644 && _k8s_alive "$name"; then
        log "k8s: $name: configuration changed, restarting it"
        _k8s_stop "$name"
    fi
    _k8s_start "$name" "$@"
}

# _k8s_stop_if_older NAME FILE...: stop the daemon if one of the files changed after it started.
_k8s_stop_if_older() {
    local name=$1 f; shift
    _k8s_alive "$name" || return 0
    for f in "$@"; do
        if [ "$f" -nt "$STATE/run/$name.pid" ]; then _k8s_stop "$name"; return 0; fi
    done
}

# _k8s_bridge: the pod bridge with its gateway address, made before the kubelet starts because that
# address is the node's IP: the kubelet refuses a loopback node IP, and the API server reaches the
# kubelet (logs, exec) at the node IP. The CNI bridge plugin then adopts this bridge.
_k8s_bridge() {
    ip link show "$K8S_BRIDGE" >/dev/null 2>&1 || ip link add "$K8S_BRIDGE" type bridge \
        || die "k8s: cannot create the bridge $K8S_BRIDGE"
    ip addr replace "$K8S_POD_GATEWAY/${K8S_POD_SUBNET#*/}" dev "$K8S_BRIDGE"
    ip link set "$K8S_BRIDGE" up
}

# /readyz is open to anyone; without root (status) the CA is not readable: then skip verification.
_k8s_api_ready() {
    local ca=(--cacert "$K8S_DIR/pki/ca.crt")
    [ -r "$K8S_DIR/pki/ca.crt" ] || ca=(-k)
    curl -sf --max-time 5 "${ca[@]}" "https://127.0.0.1:$K8S_API_PORT/readyz" | grep -qx ok
}

_k8s_node_ready() {
    [ "$(_k8s_kubectl get node "$K8S_NODE" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

_k8s_etcd_up() {
    mkdir -p "$K8S_DIR/etcd"; chmod 700 "$K8S_DIR/etcd"
    _k8s_daemon k8s-etcd /usr/bin/etcd --name clustrix-test --data-dir "$K8S_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
        --initial-cluster "clustrix-test=http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
        --listen-metrics-urls "" --enable-v2=false --log-level warn --logger zap || true
}

_k8s_containerd_up() {
    local changed=0
    mkdir -p "$K8S_DIR/containerd" "$K8S_DIR/cni/ipam"
    _k8s_containerd_config && changed=1
    _k8s_cni_config || true
    # The bridge plugin turns on IP forwarding; down puts back what the machine had.
    [ -f "$K8S_DIR/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward > "$K8S_DIR/ip_forward.orig"
    if [ "$changed" = 1 ] && _k8s_alive k8s-containerd; then
        log "k8s: containerd config changed: restarting containerd (running pods keep running)"
        _k8s_stop k8s-containerd 30
    fi
    _k8s_daemon k8s-containerd /usr/bin/containerd --config "$K8S_DIR/containerd/config.toml" || true
    wait_for 30 _k8s_ctr version || die "k8s: containerd does not answer (see $STATE/log/k8s-containerd.log)"
}

_k8s_control_plane_up() {
    local bin pki=$K8S_DIR/pki started=""
    bin=$(_k8s_bindir)
    wait_for 30 curl -sf --max-time 2 "http://127.0.0.1:$K8S_ETCD_PORT/health" \
        || die "k8s: etcd does not answer (see $STATE/log/k8s-etcd.log)"
    # --endpoint-reconciler-type=none: the API server's address is loopback, which an Endpoints
    # object may not hold; the "kubernetes" service then has no endpoints (there is no kube-proxy anyway).
    # TTLAfterFinished (alpha in 1.20, on by default from 1.21): the API server keeps a Job's
    # ttlSecondsAfterFinished and the controller manager deletes finished Jobs when it has passed.
    _k8s_daemon k8s-apiserver "$bin/kube-apiserver" \
        --feature-gates=TTLAfterFinished=true \
        --bind-address=127.0.0.1 --secure-port="$K8S_API_PORT" --insecure-port=0 \
        --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
        --etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true \
        --service-cluster-ip-range="$K8S_SERVICE_RANGE" \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc \
        --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
        --profiling=false --event-ttl=1h && started="$started apiserver"
    wait_for 60 _k8s_api_ready || die "k8s: kube-apiserver not ready after 60s (see $STATE/log/k8s-apiserver.log)"

    # One instance of each: no leader election, which also saves its start-up wait.
    _k8s_daemon k8s-controller-manager "$bin/kube-controller-manager" \
        --feature-gates=TTLAfterFinished=true \
        --kubeconfig="$K8S_DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$K8S_DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$K8S_DIR/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$K8S_CM_PORT" --port=0 --cert-dir="$K8S_DIR/controller-manager" \
        --leader-elect=false --use-service-account-credentials=true \
        --controllers='*,-nodeipam,-cloud-node-lifecycle' \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --profiling=false && started="$started controller-manager"
    _k8s_daemon k8s-scheduler "$bin/kube-scheduler" \
        --kubeconfig="$K8S_DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig="$K8S_DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig="$K8S_DIR/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$K8S_SCHED_PORT" --port=0 --cert-dir="$K8S_DIR/scheduler" \
        --leader-elect=false --profiling=false && started="$started scheduler"
    _k8s_daemon k8s-kubelet "$bin/kubelet" \
        --config="$K8S_DIR/kubelet/config.yaml" --kubeconfig="$K8S_DIR/kubelet.kubeconfig" \
        --root-dir="$K8S_DIR/kubelet/root" --cert-dir="$K8S_DIR/kubelet/pki" \
        --container-runtime=remote --container-runtime-endpoint="unix://$K8S_DIR/containerd/containerd.sock" \
        --runtime-request-timeout=2m \
        --hostname-override="$K8S_NODE" --node-ip="$K8S_POD_GATEWAY" \
        --pod-infra-container-image="$K8S_PAUSE_IMAGE" && started="$started kubelet"
    echo "$started"
}

# ---------------------------------------------------------------------------------------------------
# what the tests find in the cluster

# _k8s_fixtures: objects the tests rely on (kubectl apply: safe to repeat). Known content:
#   namespaces   clustrix-test (the profile's), clustrix-other (for isolation tests)
#   StorageClass clustrix-local (the default; no provisioner, binds at once), backed by hostPath
#                PersistentVolumes under $STATE/k8s/pv/ (directories mode 1777):
#                  clustrix-data     1Gi RWO+RWX, reserved for the PVC clustrix-test/clustrix-data
#                  clustrix-spare-1, clustrix-spare-2   1Gi RWO+RWX, free for PVCs that tests make
#                                    (Retain: each can be bound once per `up`)
#   PVC          clustrix-test/clustrix-data, 1Gi RWX, Bound to the PV clustrix-data
#   ConfigMap    clustrix-test/clustrix-config: greeting="hello from clustrix-config",
#                settings.json='{"answer": 42}'
#   Secret       clustrix-test/clustrix-secret (Opaque): username="clustrix", password="s3cret-for-tests"
#   User         clustrix-tester (token in $STATE/k8s/kubeconfig-tester): ClusterRole edit in
#                clustrix-test only, nothing in clustrix-other or cluster-wide.
_k8s_fixtures() {
    local pv
    for pv in clustrix-data clustrix-spare-1 clustrix-spare-2; do
        mkdir -p "$K8S_DIR/pv/$pv"; chmod 1777 "$K8S_DIR/pv/$pv"
    done
    _k8s_kubectl apply -f - >/dev/null <<EOT || die "k8s: cannot create the test fixtures"
apiVersion: v1
kind: Namespace
metadata: {name: clustrix-test}
---
apiVersion: v1
kind: Namespace
metadata: {name: clustrix-other}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: clustrix-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: clustrix-data}
spec:
  storageClassName: clustrix-local
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: clustrix-test, name: clustrix-data}
  hostPath: {path: $K8S_DIR/pv/clustrix-data, type: Directory}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: clustrix-spare-1}
spec:
  storageClassName: clustrix-local
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $K8S_DIR/pv/clustrix-spare-1, type: Directory}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: clustrix-spare-2}
spec:
  storageClassName: clustrix-local
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $K8S_DIR/pv/clustrix-spare-2, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: clustrix-data, namespace: clustrix-test}
spec:
  storageClassName: clustrix-local
  volumeName: clustrix-data
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: clustrix-config, namespace: clustrix-test}
data:
  greeting: hello from clustrix-config
  settings.json: '{"answer": 42}'
---
apiVersion: v1
kind: Secret
metadata: {name: clustrix-secret, namespace: clustrix-test}
type: Opaque
stringData:
  username: clustrix
  password: s3cret-for-tests
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: clustrix-tester-edit, namespace: clustrix-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: clustrix-tester}
EOT
    wait_for 30 sh -c "[ \"\$(\"$(_k8s_bindir)/kubectl\" --kubeconfig '$K8S_DIR/kubeconfig' -n clustrix-test \
        get pvc clustrix-data -o jsonpath='{.status.phase}')\" = Bound ]" \
        || die "k8s: PVC clustrix-test/clustrix-data is not Bound"
    # Pods are refused until their namespace's default service account has its token.
    local ns
    for ns in clustrix-test clustrix-other; do
        wait_for 30 sh -c "\"$(_k8s_bindir)/kubectl\" --kubeconfig '$K8S_DIR/kubeconfig' -n $ns \
            get sa default -o jsonpath='{.secrets[0].name}' | grep -q ." \
            || die "k8s: the default service account of $ns has no token"
    done
}

# _k8s_smoke: a batch/v1 Job in the Python image imports cloudpickle and numpy and reads the fixtures.
_k8s_smoke() {
    local job=clustrix-smoke-$$ out
    _k8s_kubectl -n clustrix-test apply -f - >/dev/null <<EOT || die "k8s: cannot create the smoke Job"
apiVersion: batch/v1
kind: Job
metadata: {name: $job, namespace: clustrix-test}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: smoke
        image: $K8S_PYTHON_IMAGE
        imagePullPolicy: Never
        command:
        - python3
        - -c
        - |
          import cloudpickle, numpy, os, pathlib
          print("smoke ok: cloudpickle", cloudpickle.__version__, "numpy", numpy.__version__)
          print("config:", pathlib.Path("/config/greeting").read_text())
          print("secret user:", pathlib.Path("/secret/username").read_text())
          pathlib.Path("/data/.smoke").write_text("ok")
          print("KUBERNETES_SERVICE_HOST:", os.environ.get("KUBERNETES_SERVICE_HOST"))
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: config, mountPath: /config}
        - {name: secret, mountPath: /secret}
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: clustrix-data}}
      - {name: config, configMap: {name: clustrix-config}}
      - {name: secret, secret: {secretName: clustrix-secret}}
EOT
    if ! _k8s_kubectl -n clustrix-test wait --for=condition=complete --timeout=120s "job/$job" >/dev/null 2>&1; then
        _k8s_kubectl -n clustrix-test describe "job/$job" >&2 || true
        _k8s_kubectl -n clustrix-test describe pods -l "job-name=$job" >&2 || true
        die "k8s: the smoke Job $job did not complete"
    fi
    out=$(_k8s_kubectl -n clustrix-test logs "job/$job" 2>&1) || die "k8s: no logs from the smoke Job: $out"
    grep -q '^smoke ok' <<<"$out" || die "k8s: unexpected smoke Job output: $out"
    [ "$(cat "$K8S_DIR/pv/clustrix-data/.smoke" 2>/dev/null)" = ok ] || die "k8s: the smoke Job did not write to the PVC"
    rm -f "$K8S_DIR/pv/clustrix-data/.smoke"
    log "k8s: smoke Job: $(head -1 <<<"$out")"
    _k8s_kubectl -n clustrix-test delete job "$job" --wait=false >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------------------
# taking it down

# _k8s_remove_pods: with the kubelet still running, delete every pod through the API so the kubelet
# stops each sandbox the proper way (containers, CNI teardown, network namespace, volume mounts).
_k8s_remove_pods() {
    _k8s_alive k8s-apiserver && _k8s_alive k8s-kubelet && _k8s_alive k8s-containerd || return 0
    _k8s_api_ready || return 0
    _k8s_kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    wait_for 30 _k8s_no_tasks || log "k8s: pods still running 30s after deleting them; killing them through containerd"
}

_k8s_no_tasks() { [ -z "$(_k8s_ctr tasks ls -q 2>/dev/null)" ]; }

# _k8s_remove_containers: what the kubelet left, removed through our containerd (tasks, then containers).
_k8s_remove_containers() {
    local id
    _k8s_alive k8s-containerd || return 0
    for id in $(_k8s_ctr tasks ls -q 2>/dev/null); do
        _k8s_ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $(_k8s_ctr tasks ls -q 2>/dev/null); do
        _k8s_ctr tasks delete --force "$id" >/dev/null 2>&1 || true
    done
    for id in $(_k8s_ctr containers ls -q 2>/dev/null); do
        _k8s_ctr containers delete "$id" >/dev/null 2>&1 || true
    done
}

# _k8s_stop_shims: shims whose tasks were not deleted outlive containerd; their pid files say which.
_k8s_stop_shims() {
    local f pid
    for f in "$K8S_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd-shim ]; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
}

# _k8s_unmount DIR: everything still mounted under DIR (for $K8S_DIR: secret tmpfs, overlay rootfs,
# pod network namespaces), deepest first.
_k8s_unmount() {
    local m
    awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "k8s: cannot unmount $m"
    done
}

_k8s_mounted() { awk -v d="$1/" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; }

# _k8s_cgroups: the kubelet's (now empty) kubepods cgroups, in every v1 hierarchy.
_k8s_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/kubepods; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}

# ---------------------------------------------------------------------------------------------------
# the contract

# Build steps that take minutes run in the background, one at a time per machine (a lock in the cache),
# while the rest comes up; each rechecks the cache once it holds the lock.
_k8s_bg_binaries() {
    mkdir -p "$CACHE"
    ( flock 9; _k8s_server_binaries_ready || _k8s_build ) 9>"$CACHE/build.lock"
}

_k8s_bg_python() {
    ( flock 9; _k8s_build_python ) 9>"$CACHE/images/python.lock"
}

_k8s_server_binaries_ready() {
    local b dir; dir=$(_k8s_bindir)
    for b in $K8S_BINARIES; do [ -x "$dir/$b" ] || return 1; done
}

k8s_up() {
    local t0=$SECONDS build_pid="" image_pid="" started
    mkdir -p "$K8S_DIR" "$K8S_DIR/args" "$CACHE/images" "$STATE/run" "$STATE/log"
    chmod 755 "$STATE" "$K8S_DIR"

    # The build is the long pole of a cold `up`: start it first, install the rest while it runs.
    _k8s_apt_setup
    _K8S_VERSION=$(_k8s_version)
    if ! _k8s_server_binaries_ready; then
        ensure_packages golang-go make dpkg-dev golang-github-modern-go-reflect2-dev
        _k8s_bg_binaries >"$K8S_DIR/build.log" 2>&1 &
        build_pid=$!
    fi
    ensure_packages etcd-server containerd runc containernetworking-plugins iproute2 openssl curl \
        debootstrap gcc libc6-dev python3
    if [ ! -s "$(_k8s_image_tar python)" ]; then
        _k8s_bg_python >"$K8S_DIR/image.log" 2>&1 &
        image_pid=$!
    fi

    _k8s_kubectl_bin
    _k8s_build_pause
    _k8s_pki
    _k8s_kubeconfig "$K8S_DIR/kubeconfig" admin clustrix-test
    _k8s_kubeconfig "$K8S_DIR/kubeconfig-tester" tester clustrix-test
    _k8s_kubeconfig "$K8S_DIR/kubelet.kubeconfig" kubelet
    _k8s_kubeconfig "$K8S_DIR/controller-manager.kubeconfig" controller-manager
    _k8s_kubeconfig "$K8S_DIR/scheduler.kubeconfig" scheduler
    # The daemons read these files only when they start.
    if _k8s_kubelet_config; then _k8s_stop k8s-kubelet 30; fi
    _k8s_stop_if_older k8s-kubelet "$K8S_DIR/pki/kubelet.crt" "$K8S_DIR/kubelet.kubeconfig"
    _k8s_stop_if_older k8s-apiserver "$K8S_DIR/pki/tokens.csv" "$K8S_DIR/pki/apiserver.crt"

    _k8s_etcd_up
    _k8s_bridge
    _k8s_containerd_up
    _k8s_import "$K8S_PAUSE_IMAGE" "$(_k8s_image_tar pause)"
    if [ -n "$image_pid" ]; then
        wait "$image_pid" || die "k8s: building the Python image failed (see $K8S_DIR/image.log)"
    fi
    _k8s_import "$K8S_PYTHON_IMAGE" "$(_k8s_image_tar python)"
    if [ -n "$build_pid" ]; then
        log "k8s: waiting for the kubernetes build (log: $K8S_DIR/build.log)"
        wait "$build_pid" || die "k8s: building kubernetes failed (see $K8S_DIR/build.log)"
    fi
    _k8s_server_binaries_ready || die "k8s: no kubernetes binaries in $(_k8s_bindir)"

    started=$(_k8s_control_plane_up)
    wait_for 30 curl -sf --max-time 2 "http://127.0.0.1:$K8S_KUBELET_HEALTHZ_PORT/healthz" \
        || die "k8s: the kubelet does not answer (see $STATE/log/k8s-kubelet.log)"
    wait_for 90 _k8s_node_ready || die "k8s: node $K8S_NODE not Ready after 90s (see $STATE/log/k8s-kubelet.log)"
    _k8s_fixtures
    _k8s_smoke

    write_profile kubernetes <<EOT
[profiles.kubernetes]
backend = "kubernetes"
kubeconfig = "$K8S_DIR/kubeconfig"
namespace = "clustrix-test"
image = "$K8S_PYTHON_IMAGE"
image_pull_policy = "Never"

EOT
    log "k8s: up in $((SECONDS - t0))s${started:+ (started:$started)}; KUBECONFIG=$K8S_DIR/kubeconfig"
}

k8s_down() {
    [ -n "${_K8S_VERSION:-}" ] || _K8S_VERSION=$(_k8s_version 2>/dev/null) || true
    # Nothing makes or schedules new pods from here on; then the kubelet removes the ones there are.
    _k8s_stop k8s-controller-manager
    _k8s_stop k8s-scheduler
    _k8s_remove_pods
    _k8s_stop k8s-kubelet 30
    _k8s_remove_containers
    _k8s_stop k8s-containerd 30
    _k8s_stop_shims
    if [ -d "$K8S_DIR/kubelet/root" ]; then
        # Our kubelet ran since the last down. It keeps container logs in these fixed places (no
        # option in 1.20); on a test machine it is the only kubelet. Fixed paths too: the 1.20
        # kubelet's device plugin socket, libcni's result cache, containerd's shim socket directory.
        rm -rf /var/log/pods/*
        find /var/log/containers -maxdepth 1 -type l -lname '/var/log/pods/*' -delete 2>/dev/null || true
        rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/DEPRECATION
        rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/lib/cni/results /var/lib/cni \
            /run/containerd/s /run/containerd 2>/dev/null || true
    fi
    _k8s_stop k8s-apiserver
    _k8s_stop k8s-etcd
    _k8s_unmount "$K8S_DIR"
    ip link del "$K8S_BRIDGE" 2>/dev/null || true
    if [ -s "$K8S_DIR/ip_forward.orig" ]; then
        cat "$K8S_DIR/ip_forward.orig" > /proc/sys/net/ipv4/ip_forward || true
        rm -f "$K8S_DIR/ip_forward.orig"
    fi
    _k8s_cgroups
    # The cluster's contents go; credentials, images and the cache stay for a fast next `up`.
    if _k8s_mounted "$K8S_DIR"; then
        log "k8s: something is still mounted under $K8S_DIR; keeping its data directories"
    else
        rm -rf "$K8S_DIR/etcd" "$K8S_DIR/kubelet/root" "$K8S_DIR/cni/ipam" "$K8S_DIR/containerd/state" \
            "$K8S_DIR/pv"
    fi
    remove_profiles kubernetes
    log "k8s: down (kept $K8S_DIR/pki, the kubeconfigs, containerd's images and $CACHE)"
}

k8s_status() {
    local name missing="" problem="" node=""
    for name in $K8S_DAEMONS; do
        _k8s_alive "$name" || missing="$missing ${name#k8s-}"
    done
    if [ -n "$missing" ]; then
        problem="not running:$missing"
    elif ! _k8s_api_ready 2>/dev/null; then
        problem="the API server is not ready"
    elif [ -r "$K8S_DIR/kubeconfig" ]; then
        _K8S_VERSION=$(_k8s_version 2>/dev/null) || true
        if _k8s_node_ready; then node=", node $K8S_NODE Ready"; else problem="node $K8S_NODE is not Ready"; fi
    fi
    if [ -z "$problem" ]; then
        echo "k8s: up (https://127.0.0.1:$K8S_API_PORT$node) KUBECONFIG=$K8S_DIR/kubeconfig"
    else
        echo "k8s: down ($problem)"
        return 1
    fi
}
