#!/usr/bin/env bash
# smoke.sh: prove that a real kind cluster runs offline on this machine.
#
#   scripts/kind/smoke.sh
#
# Starts a private dockerd (lib.sh), builds the node image if needed
# (node-image.sh), creates a one-node kind cluster with kind v0.33.0 built
# from the Go module proxy, runs a busybox pod (image preloaded in the node,
# imagePullPolicy Never), checks that `kubectl exec` into it works, then
# deletes the cluster and stops dockerd, whatever happened. Prints the time
# of each step (lines "kind: TIME ...").
#
# Settings: KIND_KEEP=1 leaves the cluster and dockerd running (for
# debugging; tear down with `KIND_DOWN=1 scripts/kind/smoke.sh`).
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER=${KIND_CLUSTER:-execconform}
KUBECONFIG_FILE=$KIND_WORK/kubeconfig
SHIM_DIR=$KIND_WORK/shim
TIMEOUT=${KIND_TIMEOUT:-180}

kind_() { PATH="$SHIM_DIR:$PATH" "$BIN/kind" "$@"; }
kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# teardown: delete the cluster, its network and stop dockerd; then check
# that nothing of ours is left (processes, mounts, network namespaces).
teardown() {
	trap '' INT TERM
	if docker_up; then
		kind_ delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >&2 || true
		# kind leaves its docker network (and so a host bridge) behind.
		"$DOCKER_CLI" network rm kind >/dev/null 2>&1 || true
	fi
	stop_dockerd
	local left=0 m
	if pgrep -f "$DOCKER_RUN" >/dev/null; then
		log "LEFTOVER processes: $(pgrep -af "$DOCKER_RUN" | tr '\n' ';')"
		left=1
	fi
	while read -r m; do
		[[ -n $m ]] || continue
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		log "unmounted leftover $m"
	done < <(awk -v a="$DOCKER_ROOT" -v b="$DOCKER_RUN" 'index($5, a) == 1 || index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	# dockerd makes /var/run/docker/plugins whatever its --exec-root; remove
	# it when empty (no other dockerd runs on this machine).
	rmdir /var/run/docker/plugins /var/run/docker 2>/dev/null || true
	return "$left"
}

create_cluster() {
	mkdir -p "$SHIM_DIR"
	ln -sf "$KIND_DIR/docker-shim" "$SHIM_DIR/docker"
	# kindnetd would need a pull: the node image has a bridge CNI config instead.
	cat >"$KIND_WORK/kind-config.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
  podSubnet: 10.244.0.0/16
nodes:
- role: control-plane
EOF
	kind_ delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 || true
	kind_ create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config "$KIND_WORK/kind-config.yaml" \
		--kubeconfig "$KUBECONFIG_FILE" --retain --wait 0s >&2
}

# pod_ready: create the busybox pod (retrying until the default
# ServiceAccount exists) and wait until it is Ready.
pod_ready() {
	local deadline=$((SECONDS + TIMEOUT))
	until kubectl_ apply -f - >/dev/null 2>&1 <<EOF; do
apiVersion: v1
kind: Pod
metadata:
  name: bb
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  tolerations:
  - operator: Exists
  containers:
  - name: shell
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["sleep", "2147483647"]
EOF
		((SECONDS < deadline)) || die "could not create the pod"
		sleep 0.5
	done
	until [[ $(kubectl_ get pod bb -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
		if ((SECONDS >= deadline)); then
			kubectl_ describe pod bb >&2 || true
			kubectl_ get nodes -o wide >&2 || true
			die "pod not ready after ${TIMEOUT}s"
		fi
		sleep 0.5
	done
}

exec_pod() {
	local out
	out=$(kubectl_ exec bb -c shell -- sh -c 'echo exec-ok; hostname') || die "kubectl exec failed"
	log "exec output: $(echo "$out" | tr '\n' ' ')"
	[[ $out == exec-ok* ]] || die "unexpected exec output"
}

main() {
	[[ $(id -u) == 0 ]] || die "must run as root"
	mkdir -p "$KIND_WORK"
	if [[ ${KIND_DOWN:-} == 1 ]]; then
		teardown
		return
	fi
	local t0
	t0=$(now)
	ensure_packages
	# Binaries first (slow when cold), before any daemon runs.
	"$KIND_DIR/node-image.sh" bins
	[[ ${KIND_KEEP:-} == 1 ]] || trap 'teardown' EXIT
	step "dockerd start" start_dockerd
	"$KIND_DIR/node-image.sh"
	local t1
	t1=$(now)
	step "cluster create" create_cluster
	step "pod ready" pod_ready
	step "exec" exec_pod
	log "TIME total (script start to exec): $(elapsed "$t0") s; cluster create to exec: $(elapsed "$t1") s"
	kubectl_ get nodes,pods -A -o wide >&2 || true
}

main "$@"
