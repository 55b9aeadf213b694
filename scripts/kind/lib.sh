# shellcheck shell=bash disable=SC2034 # the settings are used by the scripts that source this
# lib.sh: shared settings and helpers of scripts/kind/*.sh (sourced, not run).
#
# Everything built or downloaded is cached under $KIND_CACHE so that a second
# run is fast; scratch files go to $KIND_WORK. Nothing is pulled from a
# container registry: every image is packed locally.

KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

KIND_CACHE=${KIND_CACHE:-${HOME:-/root}/.cache/execconform/kind}
KIND_WORK=${KIND_WORK:-/tmp/kind-work}
# Binaries that scripts/e2e-local.sh already builds (etcd, kube-apiserver,
# kubelet, containerd 1.7, pause, mkimage): reused, never rebuilt here.
E2E_BIN=${E2E_BIN:-${HOME:-/root}/.cache/execconform/e2e/bin}
BIN=$KIND_CACHE/bin

K8S_VERSION=v1.34.4
STAGING_VERSION=v0.34.4
KIND_VERSION=v0.33.0
COREDNS_VERSION=v1.12.1
# What kubeadm v1.34.4 expects (cmd/kubeadm/app/constants/constants.go).
# Our etcd binary is v3.6.4 (built by e2e-local.sh) but is tagged with the
# version kubeadm asks for, so that nothing has to be pulled.
ETCD_TAG=3.6.5-0
PAUSE_TAG=3.10.1
NODE_IMAGE=${NODE_IMAGE:-execconform/kind-node:$K8S_VERSION}
BUSYBOX_IMAGE=execconform/busybox:kind

# Heavy work runs at the lowest priority: other tests share this machine.
NICE=(nice -n 19)

log() { printf 'kind: %s\n' "$*" >&2; }

# Whatever stops a script says where: the line, the command, its status
# (set -E: also inside functions and subshells).
set -E
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
on_err() {
	# Only where errexit stops the script (not in a `set +e` stretch).
	[[ $- == *e* ]] || return 0
	local where=${FUNCNAME[*]:1}
	printf 'kind: ERROR: %s line %s (%s): `%s` exited with status %s\n' "${BASH_SOURCE[1]##*/}" "$2" "${where// / < }" "$3" "$1" >&2
}
die() {
	log "ERROR: $*"
	exit 1
}
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME CMD...: run CMD and log how long it took (the numbers the report
# asks for).
# CMD runs in a subshell with errexit on: under `cmd || ...` bash would
# silently ignore set -e inside it. So CMD cannot set variables for us.
step() {
	local name=$1 t0 rc
	shift
	t0=$(now)
	set +e
	(
		set -e
		"$@"
	)
	rc=$?
	set -e
	log "TIME $name: $(elapsed "$t0") s (rc=$rc)"
	return "$rc"
}

# ------------------------------------------------------------- dockerd ----

DOCKER_ROOT=$KIND_CACHE/docker          # images survive between runs
DOCKER_RUN=$KIND_WORK/docker-run        # sockets, pid file, exec root
DOCKER_SOCK=$DOCKER_RUN/docker.sock
DOCKER_LOG=$KIND_WORK/dockerd.log
# The Debian CLI (20.10) matches the daemon; a newer CLI may be first on PATH.
DOCKER_CLI=/usr/bin/docker
# The caller's engine, if it named one (e2e-kind.sh tries it first).
USER_DOCKER_HOST=${DOCKER_HOST-}
export DOCKER_HOST=unix://$DOCKER_SOCK

ensure_packages() {
	local want="docker.io mmdebstrap iptables conntrack busybox-static" p missing=()
	for p in $want; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive "${NICE[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

docker_up() { [[ -S $DOCKER_SOCK ]] && "$DOCKER_CLI" version >/dev/null 2>&1; }

# start_dockerd: our own dockerd (own data root, socket, pid file, exec root
# and containerd), so that nothing clashes with another engineer's daemon.
# It leaves the host's iptables and ip_forward alone (--iptables=false,
# --ip-forward=false): the one kind node needs no NAT, and the API server's
# published port goes through docker-proxy. Its only host footprint is the
# bridge of the "kind" network, removed with the network.
start_dockerd() {
	docker_up && return 0
	mkdir -p "$DOCKER_ROOT" "$DOCKER_RUN"
	# No systemd on the host: cgroupfs. No registry: no mirrors, no pulls.
	setsid /usr/sbin/dockerd \
		--data-root "$DOCKER_ROOT" \
		--exec-root "$DOCKER_RUN/exec" \
		--pidfile "$DOCKER_RUN/dockerd.pid" \
		--host "unix://$DOCKER_SOCK" \
		--exec-opt native.cgroupdriver=cgroupfs \
		--storage-driver overlay2 \
		--bridge none \
		--iptables=false --ip-forward=false \
		</dev/null >"$DOCKER_LOG" 2>&1 &
	local i
	for ((i = 0; i < 300; i++)); do
		docker_up && return 0
		sleep 0.1
	done
	tail -n 20 "$DOCKER_LOG" >&2
	die "dockerd did not answer on $DOCKER_SOCK"
}

stop_dockerd() {
	local pid
	pid=$(cat "$DOCKER_RUN/dockerd.pid" 2>/dev/null) || return 0
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid"
	local i
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}
