#!/usr/bin/env bash
# shellcheck disable=SC2046,SC2086,SC2116,SC2207 # PID and path lists are split on purpose
# e2e-local.sh: a one-node real Kubernetes cluster from host processes, in its
# own network namespace, for the end-to-end tests of execconform.
#
#   scripts/e2e-local.sh run -- CMD ARGS...   bring up, run CMD in the netns, tear down
#   scripts/e2e-local.sh up                   bring up and leave running (prints the env)
#   scripts/e2e-local.sh env                  print the env of the cluster that `up` left
#   scripts/e2e-local.sh down                 tear down (idempotent; also cleans leftovers)
#   scripts/e2e-local.sh build                only build the binaries and images
#
# What runs: etcd, kube-apiserver (static token auth, RBAC), containerd (CRI,
# runc, cgroupfs) and kubelet, all as host processes inside a network
# namespace ($E2E_NAME) reached through a veth pair, and inside one private
# mount namespace, so that containerd's and the kubelet's mounts never show on
# the host, what they write to /run, /var/lib and /var/log lands in overlays
# under the run dir, and the kernel sysctls the kubelet insists on setting are
# files instead of the host's /proc/sys. Nothing outside the run dir, the
# netns, the veth pair and the cgroup parent /$E2E_NAME is touched (and those
# are removed). One static pod runs busybox `sleep` with hostNetwork; images
# are packed locally (e2e/tools/images) and imported with ctr: nothing is
# pulled.
#
# CMD runs as `nsenter --net=/run/netns/$E2E_NAME -- CMD ARGS...` (not `ip
# netns exec`, which remounts /sys), with its stdin, stdout and stderr, and
# these variables exported:
#   E2E_APISERVER   https://NODE_IP:6443
#   E2E_CA_FILE     PEM of the CA that signed the API server's serving cert
#   E2E_TOKEN       static bearer token in group system:masters
#   E2E_TOKEN_UNPRIVILEGED  a valid token with no RBAC rights (403s)
#   E2E_NAMESPACE   namespace of the pod (default)
#   E2E_POD         the exec-able pod, as the API knows it (the mirror pod)
#   E2E_CONTAINER   its container
#   E2E_NODE        the node name
#   E2E_NETNS       the network namespace's name (/run/netns/NAME)
#   E2E_LOGDIR      one log file per component; kept after teardown
#   E2E_KUBECONFIG  a kubeconfig for E2E_TOKEN
#
# Exit status of `run`: CMD's; 125 when bring-up failed or teardown left
# something behind (CMD's own failure wins); 130/143 on SIGINT/SIGTERM.
# Teardown always runs: after CMD, after a failed bring-up, on SIGINT, SIGTERM
# and SIGHUP. Messages go to stderr; stdout is CMD's alone (and the env
# for `up`/`env`).
#
# Settings (environment):
#   E2E_CACHE    build cache (default ~/.cache/execconform/e2e); binaries in $E2E_CACHE/bin,
#                rebuilt when a file of e2e/tools/*/ (go.mod, go.sum, *.go) or the Go version changes
#   E2E_NAME     names the netns, the cgroup parent, the run dir, the lock (default execconform-e2e)
#   E2E_RUN_DIR  run directory (default /tmp/$E2E_NAME); logs in $E2E_RUN_DIR/logs
#                (the previous run's in logs.prev)
#   E2E_SUBNET   first three octets of the /24 of the veth pair (default 10.213.77);
#                host end .1, node .2
#   E2E_TIMEOUT  seconds allowed for each wait of the bring-up (default 120)
#   E2E_VERBOSE  1: print the time of each step
set -Eeuo pipefail
# Whatever stops the script says where: the line, the command, its status.
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
on_err() {
	# Only where errexit stops the script (not in a `set +e` stretch).
	[[ $- == *e* ]] || return 0
	local where=${FUNCNAME[*]:1}
	printf 'e2e-local: ERROR: line %s (%s): `%s` exited with status %s\n' "$2" "${where// / < }" "$3" "$1" >&2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${E2E_NAME:-execconform-e2e}
CACHE=${E2E_CACHE:-${HOME:-/root}/.cache/execconform/e2e}
BIN=$CACHE/bin
RUN=${E2E_RUN_DIR:-/tmp/$NAME}
SUBNET=${E2E_SUBNET:-10.213.77}
TIMEOUT=${E2E_TIMEOUT:-120}

NETNS=$NAME
HASH=$(printf '%s' "$NAME" | sha256sum | cut -c1-6)
VETH_HOST=ecf${HASH}h
VETH_NODE=ecf${HASH}n
CGROUP=$NAME
HOST_IP=$SUBNET.1
NODE_IP=$SUBNET.2
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
NODE_NAME=e2e-node
NAMESPACE=default
STATIC_POD=target
POD=$STATIC_POD-$NODE_NAME
CONTAINER=shell
BUSYBOX_IMAGE=localhost/execconform/busybox:e2e
PAUSE_IMAGE=localhost/execconform/pause:e2e
LOGDIR=$RUN/logs
SOCK=$RUN/containerd/containerd.sock
MNTNS=$RUN/ns/mnt
LOCK=/tmp/$NAME.lock
# Bump to force a rebuild of every tool.
BUILD_REV=2
# The sysctls the kubelet sets at start; inside our mount namespace they are
# files, so the host's stay as they are.
KUBELET_SYSCTLS="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes"

log() { printf 'e2e-local: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 125
}
now() { echo "$EPOCHREALTIME"; }
T_START=$(now)
# vlog: a progress line with the time since start, when E2E_VERBOSE=1.
vlog() { [[ ${E2E_VERBOSE:-} != 1 ]] || log "[$(elapsed "$T_START")] $*"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

case $RUN in
/*) ;;
*) die "E2E_RUN_DIR must be absolute: $RUN" ;;
esac
[[ $RUN != *[[:space:]]* && $RUN != / && ${#RUN} -le 60 ]] || die "E2E_RUN_DIR must be short and have no spaces: $RUN"
case $RUN/ in
/run/* | /var/run/* | /var/lib/* | /var/log/*) die "E2E_RUN_DIR must not be under /run, /var/lib or /var/log: $RUN" ;;
esac
[[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "E2E_SUBNET must be like 10.213.77: $SUBNET"

# ---------------------------------------------------------------- setup ----

# installed PKG: whether Debian's package PKG is installed.
installed() {
	local status
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
	[[ $status == ii* ]]
}

ensure_packages() {
	[[ $(id -u) == 0 ]] || die "must run as root"
	local want="runc busybox-static iproute2 util-linux mount" missing=() p
	# One query per package: dpkg-query -W exits 1 when a package is not
	# installed, which under set -e (or pipefail) must not end the script.
	for p in $want; do
		installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq >&2 || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
			die "apt-get install ${missing[*]} failed"
	fi
	local c
	for c in runc ip nsenter unshare setsid flock mount umount go; do
		command -v "$c" >/dev/null || die "$c not found"
	done
}

busybox_path() {
	local p
	for p in /bin/busybox /usr/bin/busybox; do
		[[ -x $p ]] && {
			echo "$p"
			return
		}
	done
	die "busybox not found (package busybox-static)"
}

# tool_stamp DIR: hash of what the binaries built from e2e/tools/DIR depend on.
tool_stamp() {
	{
		echo "rev $BUILD_REV"
		go version
		(cd "$ROOT/e2e/tools/$1" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum)
		if [[ $1 == images ]]; then sha256sum "$(busybox_path)"; fi
	} | sha256sum | cut -d' ' -f1
}

# build_tool DIR OUTPUT... -- COMMAND...: run COMMAND in e2e/tools/DIR unless
# the stamp matches and every OUTPUT exists.
build_tool() {
	local dir=$1 stamp outs=() f ok=1
	shift
	while [[ $1 != -- ]]; do
		outs+=("$1")
		shift
	done
	shift
	stamp=$(tool_stamp "$dir")
	[[ -f $BIN/.stamp-$dir && $(cat "$BIN/.stamp-$dir") == "$stamp" ]] || ok=0
	for f in "${outs[@]}"; do [[ -x $BIN/$f || -f $BIN/$f ]] || ok=0; done
	((ok)) && return 0
	log "building ${outs[*]} (e2e/tools/$dir)"
	local t0
	t0=$(now)
	rm -f "$BIN/.stamp-$dir"
	(cd "$ROOT/e2e/tools/$dir" && GOWORK=off GOFLAGS=-mod=readonly "$@") >&2 || die "build in e2e/tools/$dir failed"
	echo "$stamp" >"$BIN/.stamp-$dir"
	log "built ${outs[*]} in $(elapsed "$t0") s"
}

build_all() {
	mkdir -p "$BIN"
	# -s -w: no symbol table and DWARF, which halves the link time (stack
	# traces keep their function names).
	build_tool etcd etcd -- go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
	# containerd 1.7 from source: Debian 12's 1.6.20 shim deadlocks under
	# concurrent exec churn (see e2e/tools/containerd/tools.go).
	build_tool containerd containerd containerd-shim-runc-v2 ctr -- env CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags="-s -w" -tags no_btrfs,no_devmapper,no_zfs -o "$BIN/" \
		github.com/containerd/containerd/cmd/containerd github.com/containerd/containerd/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/cmd/ctr
	build_tool kube kube-apiserver kubelet -- go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$BIN/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubelet
	# shellcheck disable=SC2016 # expanded by sh -c
	build_tool images e2ectl mkimage pause images.tar -- sh -c '
		CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$1/" ./cmd/... &&
		"$1/mkimage" -out "$1/images.tar" -busybox "$2" -busybox-name "$3" -pause "$1/pause" -pause-name "$4"' \
		sh "$BIN" "$(busybox_path)" "$BUSYBOX_IMAGE" "$PAUSE_IMAGE"
}

acquire_lock() {
	exec 9>"$LOCK"
	if ! flock -n 9; then
		log "waiting for another e2e-local.sh ($LOCK)"
		flock -w 900 9 || die "lock $LOCK still held after 900 s"
	fi
}

# ------------------------------------------------------------ processes ----

# alive PID: the process exists and is not a zombie. (The helpers here use
# bash builtins only: they run in loops.)
alive() {
	local s
	[[ -n $1 ]] || return 1
	{ read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
	s=${s##*) }
	[[ ${s:0:1} != Z ]]
}

# cmdline PID: the command line of PID, arguments joined by spaces.
cmdline() {
	local -a a=()
	{ mapfile -d '' a <"/proc/$1/cmdline"; } 2>/dev/null || true
	local IFS=' '
	printf '%s' "${a[*]}"
}

# ancestors: this shell and its ancestors, never to be killed.
ancestors() {
	local p=$$ s
	while [[ $p -gt 1 ]]; do
		printf '%s ' "$p"
		{ read -r s <"/proc/$p/stat"; } 2>/dev/null || break
		s=${s##*) }
		set -- $s
		p=$2
	done
	printf '%s ' "$BASHPID"
}

# find_procs: PIDs of every process of the cluster: in its network or mount
# namespace or its cgroups, or naming its components' files in its command line.
find_procs() {
	local ino strong=() weak=() p
	if [[ -e /run/netns/$NETNS ]] && ino=$(stat -L -c %i "/run/netns/$NETNS" 2>/dev/null); then
		strong+=($(find /proc/[0-9]*/ns/net -maxdepth 0 -lname "net:\[$ino\]" 2>/dev/null | cut -d/ -f3))
	fi
	if [[ -e $MNTNS ]] && [[ $(stat -f -c %T "$MNTNS" 2>/dev/null) == nsfs ]] && ino=$(stat -L -c %i "$MNTNS" 2>/dev/null); then
		strong+=($(find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "mnt:\[$ino\]" 2>/dev/null | cut -d/ -f3))
	fi
	strong+=($(cgroup_procs))
	weak=($(grep -laE -- "$RUN/(containerd|etcd|pki|kubelet|ns)/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3))
	((${#strong[@]} + ${#weak[@]})) || return 0
	local skip self seen=" "
	skip=" $(ancestors) "
	if ((${#weak[@]})); then
		# Our own subshells share our command line, which may name our files.
		self=$(cmdline $$)
		for p in "${weak[@]}"; do
			[[ $(cmdline "$p") == "$self" ]] || strong+=("$p")
		done
	fi
	for p in "${strong[@]}"; do
		[[ $skip == *" $p "* || $seen == *" $p "* ]] && continue
		seen+="$p "
		alive "$p" && echo "$p"
	done
	return 0
}

cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts; }

# start NAME CMD...: run CMD in the cluster's namespaces, detached from our
# session (a Ctrl-C reaches us, not it), logging to $LOGDIR/NAME.log.
start() {
	local name=$1
	shift
	setsid nsenter --net="/run/netns/$NETNS" --mount="$MNTNS" -- "$@" </dev/null >>"$LOGDIR/$name.log" 2>&1 3>&- 9>&- &
	echo $! >"$RUN/pids/$name"
	DAEMON_PID[$name]=$!
	disown $! # no "Killed" notices at teardown
	DAEMONS+=("$name")
}

# check_daemons: fail when a started component has exited.
check_daemons() {
	local d pid
	for d in "${DAEMONS[@]}"; do
		pid=${DAEMON_PID[$d]}
		if ! alive "$pid"; then
			log "$d exited; last lines of $LOGDIR/$d.log:"
			tail -n 25 "$LOGDIR/$d.log" >&2 || true
			return 1
		fi
	done
}

# wait_for WHAT CMD...: run CMD (which waits with its own deadline) while
# watching that every component is still alive.
wait_for() {
	local what=$1 pid rc=0
	shift
	"$@" 3>&- 9>&- &
	pid=$!
	while alive "$pid"; do
		if ! check_daemons; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			die "$what: a component died"
		fi
		sleep 0.05
	done
	wait "$pid" || rc=$?
	((rc == 0)) || die "$what failed (exit $rc)"
}

# in_netns CMD...: run CMD in the cluster's network namespace only.
in_netns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# ---------------------------------------------------------------- up -------

write_configs() {
	local token=$1 token2=$2 kubelet_token=$3
	cat >"$RUN/pki/tokens.csv" <<EOF
$token,e2e-admin,e2e-admin,"system:masters"
$kubelet_token,system:node:$NODE_NAME,system:node:$NODE_NAME,"system:nodes,system:masters"
$token2,e2e-unprivileged,e2e-unprivileged
EOF
	chmod 600 "$RUN/pki/tokens.csv"

	kubeconfig "$token" e2e-admin >"$RUN/kubeconfig"
	kubeconfig "$kubelet_token" kubelet >"$RUN/kubelet/kubeconfig"

	cat >"$RUN/containerd/config.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

# The tasks service needs the (otherwise unused) v1 runtime: keep its files here too.
[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "$RUN/runc-v1"

[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_concurrent_downloads = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$RUN/cni/bin"
    conf_dir = "$RUN/cni/net.d"
EOF

	local resolv=/etc/resolv.conf
	[[ -f $resolv ]] || resolv=""
	cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
cgroupsPerQOS: true
failCgroupV1: false
containerRuntimeEndpoint: unix://$SOCK
failSwapOn: false
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
staticPodPath: $RUN/manifests
syncFrequency: 5s
fileCheckFrequency: 10s
podLogsDir: $RUN/kubelet/pod-logs
volumePluginDir: $RUN/kubelet/volume-plugins
resolvConf: "$resolv"
oomScoreAdj: 0
serializeImagePulls: false
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
localStorageCapacityIsolation: true
EOF

	cat >"$RUN/manifests/$STATIC_POD.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $STATIC_POD
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/name: execconform-e2e-target
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: $CONTAINER
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["sleep", "2147483647"]
EOF
}

kubeconfig() {
	cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $RUN/pki/ca.crt
users:
- name: $2
  user:
    token: $1
contexts:
- name: $NAME
  context:
    cluster: $NAME
    user: $2
    namespace: $NAMESPACE
current-context: $NAME
EOF
}

random_token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

setup_network() {
	ip netns add "$NETNS"
	ip link add "$VETH_HOST" type veth peer name "$VETH_NODE" netns "$NETNS"
	ip addr add "$HOST_IP/24" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	ip -n "$NETNS" link set lo up
	ip -n "$NETNS" addr add "$NODE_IP/24" dev "$VETH_NODE"
	ip -n "$NETNS" link set "$VETH_NODE" up
}

# setup_mount_ns: a persistent private mount namespace for the components,
# with the kubelet's sysctls replaced by files.
setup_mount_ns() {
	mkdir -p "$RUN/ns" "$RUN/sysctl"
	mount --bind "$RUN/ns" "$RUN/ns"
	mount --make-private "$RUN/ns"
	: >"$MNTNS"
	unshare --mount="$MNTNS" --propagation private true
	local k d script=""
	# /run, /var/lib and /var/log (where the kubelet and containerd write
	# whatever their flags do not move: device-plugin socket, container log
	# links, shim sockets) become overlays whose writes land in the run dir.
	for d in run var/lib var/log; do
		mkdir -p "$RUN/overlay/$d/upper" "$RUN/overlay/$d/work"
		script+="mount -t overlay overlay -o lowerdir=/$d,upperdir=$RUN/overlay/$d/upper,workdir=$RUN/overlay/$d/work /$d && "
	done
	for k in $KUBELET_SYSCTLS; do
		cat "/proc/sys/$k" >"$RUN/sysctl/${k//\//.}"
		script+="mount --bind $RUN/sysctl/${k//\//.} /proc/sys/$k && "
	done
	nsenter --mount="$MNTNS" -- sh -c "${script}true"
}

cgroup_setup() {
	local mp
	for mp in $(cgroup_mounts); do
		mkdir -p "$mp/$CGROUP"
		if [[ -f $mp/cpuset.cpus ]]; then
			cat "$mp/cpuset.cpus" >"$mp/$CGROUP/cpuset.cpus"
			cat "$mp/cpuset.mems" >"$mp/$CGROUP/cpuset.mems"
		fi
	done
}

bring_up() {
	local t0 token token2 kubelet_token
	t0=$(now)
	DAEMONS=()
	if [[ -d $LOGDIR ]]; then
		rm -rf "$RUN/logs.prev"
		mv "$LOGDIR" "$RUN/logs.prev"
	fi
	mkdir -p "$LOGDIR" "$RUN"/{pki,etcd,containerd,kubelet,manifests,pids,cni/net.d,cni/bin}
	chmod 700 "$RUN/pki"
	log "logs in $LOGDIR"

	token=$(random_token)
	token2=$(random_token)
	kubelet_token=$(random_token)
	"$BIN/e2ectl" certs -dir "$RUN/pki" -ip "$NODE_IP,127.0.0.1,$SERVICE_IP"
	write_configs "$token" "$token2" "$kubelet_token"
	setup_network
	setup_mount_ns
	cgroup_setup

	vlog "namespaces ready"
	start etcd "$BIN/etcd" --name e2e --data-dir "$RUN/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster e2e=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn
	# PATH: containerd finds its shim (containerd-shim-runc-v2) there.
	PATH="$BIN:$PATH" start containerd "$BIN/containerd" --config "$RUN/containerd/config.toml"
	# kube-apiserver retries etcd until it answers.
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers=http://127.0.0.1:2379 \
		--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
		--tls-cert-file="$RUN/pki/apiserver.crt" --tls-private-key-file="$RUN/pki/apiserver.key" \
		--cert-dir="$RUN/pki/apiserver" \
		--token-auth-file="$RUN/pki/tokens.csv" \
		--authorization-mode=RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$RUN/pki/sa.pub" \
		--service-account-signing-key-file="$RUN/pki/sa.key" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--kubelet-preferred-address-types=InternalIP \
		--allow-privileged=true \
		--enable-priority-and-fairness=false \
		--profiling=false

	wait_for "containerd" wait_containerd
	vlog "containerd ready"
	"$BIN/ctr" -n k8s.io --address "$SOCK" images import "$BIN/images.tar" >>"$LOGDIR/ctr-import.log" 2>&1 ||
		{
			tail -n 20 "$LOGDIR/ctr-import.log" >&2
			die "image import failed"
		}

	vlog "images imported"
	# The kubelet creates the mirror pod at its first sync of the static pod
	# only if the namespace exists by then (else at the next sync,
	# syncFrequency later); kube-apiserver serves system:masters (the
	# kubelet's group) before /readyz, which waits for the RBAC bootstrap.
	wait_for "etcd" in_netns "$BIN/e2ectl" wait-http -url http://127.0.0.1:2379/health -timeout "${TIMEOUT}s"
	wait_for "kube-apiserver" in_netns "$BIN/e2ectl" wait-apiserver -namespace-only \
		-server "https://$NODE_IP:6443" -ca "$RUN/pki/ca.crt" -token "$token" -timeout "${TIMEOUT}s"
	vlog "kube-apiserver serves, namespace default exists"
	start kubelet "$BIN/kubelet" \
		--config="$RUN/kubelet/config.yaml" \
		--kubeconfig="$RUN/kubelet/kubeconfig" \
		--root-dir="$RUN/kubelet/root" \
		--cert-dir="$RUN/kubelet/pki" \
		--hostname-override="$NODE_NAME" \
		--node-ip="$NODE_IP"

	wait_for "kube-apiserver" in_netns "$BIN/e2ectl" wait-apiserver \
		-server "https://$NODE_IP:6443" -ca "$RUN/pki/ca.crt" -token "$token" -timeout "${TIMEOUT}s"
	vlog "kube-apiserver ready"

	wait_for "exec in pod $NAMESPACE/$POD" in_netns "$BIN/e2ectl" exec \
		-server "https://$NODE_IP:6443" -ca "$RUN/pki/ca.crt" -token "$token" -timeout "${TIMEOUT}s" \
		-namespace "$NAMESPACE" -pod "$POD" -container "$CONTAINER" -expect execconform-ready -q -- echo execconform-ready

	vlog "exec works"
	cat >"$RUN/env" <<EOF
export E2E_APISERVER='https://$NODE_IP:6443'
export E2E_CA_FILE='$RUN/pki/ca.crt'
export E2E_TOKEN='$token'
export E2E_TOKEN_UNPRIVILEGED='$token2'
export E2E_NAMESPACE='$NAMESPACE'
export E2E_POD='$POD'
export E2E_CONTAINER='$CONTAINER'
export E2E_NODE='$NODE_NAME'
export E2E_NETNS='$NETNS'
export E2E_LOGDIR='$LOGDIR'
export E2E_KUBECONFIG='$RUN/kubeconfig'
EOF
	log "cluster up in $(elapsed "$t0") s (until the pod was exec-able); memory $(memory_mb) MB RSS (etcd, kube-apiserver, kubelet, containerd, shims)"
}

wait_containerd() {
	local deadline=$((SECONDS + TIMEOUT))
	until "$BIN/ctr" --address "$SOCK" --timeout 2s version >/dev/null 2>&1; do
		((SECONDS < deadline)) || {
			log "containerd not answering on $SOCK after ${TIMEOUT}s"
			return 1
		}
		sleep 0.05
	done
}

memory_mb() {
	local kb=0 p comm rss
	for p in $(find_procs); do
		comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
		case $comm in
		etcd | kube-apiserver | kubelet | containerd | containerd-shim*)
			rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
			kb=$((kb + ${rss:-0}))
			;;
		esac
	done
	echo $((kb / 1024))
}

# ------------------------------------------------------------- teardown ----

# wait_gone GRACE PID...: wait up to GRACE seconds until every PID is gone;
# fails (leaving the survivors in $left) when some outlive it.
wait_gone() {
	local grace=$1 p deadline
	shift
	deadline=$((${EPOCHREALTIME/./} + grace * 1000000))
	while :; do
		left=()
		for p; do alive "$p" && left+=("$p"); done
		((${#left[@]})) || return 0
		((${EPOCHREALTIME/./} < deadline)) || return 1
		sleep 0.02
	done
}

# stop_pids GRACE PID...: SIGTERM, then SIGKILL after GRACE seconds.
stop_pids() {
	local grace=$1 left
	shift
	(($#)) || return 0
	kill -TERM "$@" 2>/dev/null || true
	wait_gone "$grace" "$@" || kill -KILL "${left[@]}" 2>/dev/null || true
}

# kill_wait GRACE PID...: SIGKILL, then wait up to GRACE seconds until gone.
kill_wait() {
	local grace=$1 left
	shift
	(($#)) || return 0
	kill -KILL "$@" 2>/dev/null || true
	wait_gone "$grace" "$@"
}

# cgroup_procs: the processes in the cluster's cgroups (the pods').
cgroup_procs() {
	local dirs
	dirs=$(cgroup_dirs)
	[[ -z $dirs ]] || find $dirs -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# daemon_pid NAME: the recorded PID of a component, if it is still that one.
daemon_pid() {
	local f=$RUN/pids/$1 p
	[[ -f $f ]] || return 0
	p=$(cat "$f")
	[[ $p =~ ^[0-9]+$ ]] && alive "$p" && grep -qaF -- "$RUN/" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	return 0
}

mounts_under_run() {
	awk -v r="$RUN" '$5 == r || index($5, r "/") == 1 { print length($5), $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

cgroup_dirs() {
	local mp
	for mp in $(cgroup_mounts); do [[ ! -d $mp/$CGROUP ]] || echo "$mp/$CGROUP"; done
}

# teardown: remove everything a bring-up of this NAME made, whatever state it
# is in. Returns non-zero when something is left.
teardown() {
	trap '' INT TERM HUP
	disown -a 2>/dev/null || true # no "Killed" notices for our jobs
	local t0 p
	t0=$(now)
	verify_clean quiet && return 0
	log "tearing down"
	vlog "teardown starts"

	# Nothing of the cluster is worth a graceful stop (all its state is
	# thrown away, and its mounts, sockets and files are all in the mount
	# namespace or the run dir): SIGKILL, in order.
	# 1. The kubelet first, so that it restarts nothing.
	kill_wait 10 $(daemon_pid kubelet)
	vlog "kubelet stopped"
	# 2. The pods' sandboxes and containers: every process in the cgroups.
	kill_wait 10 $(cgroup_procs)
	vlog "containers stopped"
	# 3. containerd and its shims, kube-apiserver, etcd, and anything else
	# of the cluster (an earlier run's, say).
	local deadline=$((SECONDS + 20)) pids
	while pids=$(find_procs) && [[ -n $pids ]]; do
		((SECONDS < deadline)) || break
		kill_wait 5 $pids
	done
	vlog "processes gone"
	# 4. Mounts under the run dir, deepest first (the mount namespace's
	# file last but one: unmounting it frees every mount made in it).
	deadline=$((SECONDS + 10))
	local m mounts
	while mounts=$(mounts_under_run) && [[ -n $mounts ]]; do
		((SECONDS < deadline)) || break
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
	done
	vlog "unmounted"
	# 5. The veth pair and the network namespace.
	ip link del "$VETH_HOST" 2>/dev/null || true
	if [[ -e /run/netns/$NETNS ]]; then
		ip netns del "$NETNS" 2>/dev/null || {
			umount -l "/run/netns/$NETNS" 2>/dev/null || true
			rm -f "/run/netns/$NETNS"
		}
	fi
	# ip netns add made /run/netns a mount point; undo it when it is empty.
	if [[ -d /run/netns && -z $(ls -A /run/netns 2>/dev/null) ]]; then
		umount /run/netns 2>/dev/null || true
		rmdir /run/netns 2>/dev/null || true
	fi
	vlog "network removed"
	# 6. The kubelet's cgroups, deepest first, in every hierarchy.
	deadline=$((SECONDS + 10))
	local dirs
	while dirs=$(cgroup_dirs) && [[ -n $dirs ]]; do
		find $dirs -depth -type d -exec rmdir {} + 2>/dev/null || true
		[[ -z $(cgroup_dirs) ]] && break
		((SECONDS < deadline)) || break
		for p in $(find_procs); do kill -KILL "$p" 2>/dev/null || true; done
		sleep 0.1
	done
	vlog "cgroups removed"
	# 7. The run dir, but for the logs; never through a mount.
	if [[ -d $RUN && -z $(mounts_under_run) ]]; then
		find "$RUN" -mindepth 1 -maxdepth 1 ! -name logs ! -name logs.prev -exec rm -rf --one-file-system {} +
	fi
	local rc=0
	verify_clean || rc=1
	log "torn down in $(elapsed "$t0") s; logs kept in $LOGDIR"
	return $rc
}

verify_clean() {
	local bad=() x quiet=${1:-}
	x=$(find_procs)
	[[ -z $x ]] || bad+=("processes: $(for p in $x; do printf '%s(%s) ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done)")
	x=$(mounts_under_run)
	[[ -z $x ]] || bad+=("mounts: $(echo $x)")
	[[ ! -e /run/netns/$NETNS ]] || bad+=("netns /run/netns/$NETNS")
	! ip link show "$VETH_HOST" >/dev/null 2>&1 || bad+=("veth $VETH_HOST")
	x=$(cgroup_dirs)
	[[ -z $x ]] || bad+=("cgroups: $(echo $x)")
	if [[ -d $RUN ]]; then
		x=$(find "$RUN" -mindepth 1 -maxdepth 1 ! -name logs ! -name logs.prev)
		[[ -z $x ]] || bad+=("files: $(echo $x)")
	fi
	((${#bad[@]} == 0)) && return 0
	[[ -n $quiet ]] && return 1
	for x in "${bad[@]}"; do log "LEFTOVER $x"; done
	return 1
}

# ------------------------------------------------------------- commands ----

declare -A DAEMON_PID=()
CMD_PID=
RC=
PHASE=setup
on_exit() {
	local rc=$?
	[[ -n $RC ]] && rc=$RC
	# A bring-up that failed (not one that was interrupted) exits 125.
	if [[ $PHASE == setup && $rc != 0 && $rc != 129 && $rc != 130 && $rc != 143 ]]; then rc=125; fi
	trap '' INT TERM HUP
	disown -a 2>/dev/null || true
	if [[ -n $CMD_PID ]] && alive "$CMD_PID"; then stop_pids 5 "$CMD_PID"; fi
	if ! teardown; then
		((rc != 0)) || rc=125
	fi
	exit "$rc"
}

on_signal() {
	local sig=$1 code=$2
	trap '' INT TERM HUP
	log "got SIG$sig"
	if [[ -n $CMD_PID ]] && alive "$CMD_PID"; then kill "-$sig" "$CMD_PID" 2>/dev/null || true; fi
	RC=$code
	exit "$code"
}

cmd_run() {
	[[ ${1:-} == -- ]] && shift
	(($#)) || die "usage: $0 run -- CMD ARGS..."
	exec 3<&0
	acquire_lock
	ensure_packages
	build_all
	teardown || die "leftovers of an earlier run could not be removed"
	trap on_exit EXIT
	trap 'on_signal INT 130' INT
	trap 'on_signal TERM 143' TERM
	trap 'on_signal HUP 129' HUP
	bring_up
	PHASE=cmd
	set -a
	# shellcheck disable=SC1091
	. "$RUN/env"
	set +a
	log "running: $*"
	nsenter --net="/run/netns/$NETNS" -- "$@" <&3 3<&- 9>&- &
	CMD_PID=$!
	local rc=0
	wait "$CMD_PID" || rc=$?
	CMD_PID=
	log "command exited with status $rc"
	RC=$rc
	exit "$rc"
}

cmd_up() {
	acquire_lock
	ensure_packages
	build_all
	teardown || die "leftovers of an earlier run could not be removed"
	trap on_exit EXIT
	trap 'on_signal INT 130' INT
	trap 'on_signal TERM 143' TERM
	trap 'on_signal HUP 129' HUP
	bring_up
	trap - EXIT INT TERM HUP
	cat "$RUN/env"
	log "running; enter it with: nsenter --net=/run/netns/$NETNS -- CMD; stop it with: $0 down"
}

cmd_down() {
	acquire_lock
	teardown || exit 125
}

case ${1:-} in
run)
	shift
	cmd_run "$@"
	;;
up) cmd_up ;;
down) cmd_down ;;
env) cat "$RUN/env" 2>/dev/null || die "no cluster is up ($RUN/env missing)" ;;
build)
	acquire_lock
	ensure_packages
	build_all
	;;
*)
	sed -n '3,/^set -E/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
