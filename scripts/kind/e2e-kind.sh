#!/usr/bin/env bash
# e2e-kind.sh: run a command under e2e-provider kind (make e2e-kind), with a
# Docker engine and, offline, a node image built here.
#
#   scripts/kind/e2e-kind.sh E2E_PROVIDER_BIN -- CMD ARGS...
#
# Docker: the one `docker version` reaches (yours, DOCKER_HOST honoured),
# else, as root with Debian's docker.io installed, a private dockerd (lib.sh:
# own data root and socket, no iptables changes) started here and stopped at
# the end. KIND_OFFLINE=1 always uses the private one.
#
# KIND_OFFLINE=1 (no registry, e.g. CI): installs docker.io, mmdebstrap and
# friends from Debian, builds the node image from Debian packages and
# binaries built from the Go module proxy (node-image.sh, cached under
# ~/.cache/execconform/kind), and runs kind with it, the bridge CNI config
# and the preloaded busybox. Without it: kind's default node image and
# busybox:1.36, pulled.
#
# KIND_NODE_IMAGE: another node image. E2E_REPORT_DIR: results; a failed
# run's cluster logs go to $E2E_REPORT_DIR/kind/cluster-logs.
# Exit status: the command's; e2e-provider's 125 for a failed setup.
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

provider=$1
shift
[[ ${1:-} == -- ]] && shift
(($# > 0)) || die "usage: e2e-kind.sh E2E_PROVIDER_BIN -- CMD ARGS..."

args=()
own_dockerd=0
report=${E2E_REPORT_DIR:-$PWD/e2e-report}
logs=$report/kind/cluster-logs
rm -rf "$logs"

teardown() {
	trap '' INT TERM
	if ((own_dockerd)); then
		# kind leaves its docker network (and so a host bridge) behind.
		"$DOCKER_CLI" network rm kind >/dev/null 2>&1 || true
		stop_dockerd
		rmdir /var/run/docker/plugins /var/run/docker 2>/dev/null || true
		if pgrep -f "$DOCKER_RUN" >/dev/null; then
			log "LEFTOVER processes: $(pgrep -af "$DOCKER_RUN" | tr '\n' ';')"
			return 1
		fi
	fi
}

main() {
	local t0 status=0
	t0=$(now)
	if [[ ${KIND_OFFLINE:-} == 1 ]]; then
		[[ $(id -u) == 0 ]] || die "KIND_OFFLINE=1 needs root (Debian packages, a private dockerd)"
		ensure_packages
		step "binaries (kubeadm, kubectl, kcm, scheduler, kube-proxy, coredns, kind)" "$KIND_DIR/node-image.sh" bins
	fi
	# Which engine: offline, ours (node-image.sh builds into it); else the
	# caller's DOCKER_HOST, else ours if it already runs, else the default
	# socket, else start ours.
	if [[ ${KIND_OFFLINE:-} == 1 ]]; then
		if ! docker_up; then
			own_dockerd=1
			trap 'teardown' EXIT
			step "dockerd start" start_dockerd
		fi
	elif [[ -n $USER_DOCKER_HOST ]] && DOCKER_HOST=$USER_DOCKER_HOST docker version >/dev/null 2>&1; then
		export DOCKER_HOST=$USER_DOCKER_HOST
	elif docker_up; then
		: # ours, left running by someone else: used, not stopped
	elif env -u DOCKER_HOST docker version >/dev/null 2>&1; then
		unset DOCKER_HOST
	else
		[[ $(id -u) == 0 && -x /usr/sbin/dockerd ]] || die "no Docker engine answers, and none can be started here (needs root and Debian's docker.io: apt-get install docker.io)"
		own_dockerd=1
		trap 'teardown' EXIT
		step "dockerd start" start_dockerd
	fi
	log "Docker engine: ${DOCKER_HOST:-the default socket}"
	if [[ ${KIND_OFFLINE:-} == 1 ]]; then
		step "node image" "$KIND_DIR/node-image.sh"
		args+=(--node-image "${KIND_NODE_IMAGE:-$NODE_IMAGE}" --config "$KIND_DIR/node/kind-config.yaml"
			--image "docker.io/$BUSYBOX_IMAGE" --pull-policy Never --docker-shim "$KIND_DIR/docker-shim")
		# kind's docker calls go through the Debian CLI that matches the daemon.
		export KIND_REAL_DOCKER=$DOCKER_CLI
		PATH=$(dirname "$DOCKER_CLI"):$PATH
		export PATH
	elif [[ -n ${KIND_NODE_IMAGE:-} ]]; then
		args+=(--node-image "$KIND_NODE_IMAGE")
	fi
	# shellcheck disable=SC2086 # KIND_PROVIDER_FLAGS is a list of flags
	"$provider" kind --logs "$logs" "${args[@]}" ${KIND_PROVIDER_FLAGS:-} -- "$@" || status=$?
	log "TIME e2e-kind total: $(elapsed "$t0") s (status $status)"
	return "$status"
}

main "$@"
