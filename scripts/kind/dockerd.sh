#!/usr/bin/env bash
# dockerd.sh: the private Docker engine of lib.sh, for CI (.ci/run).
#
#   scripts/kind/dockerd.sh start   install Debian's docker.io (and what
#                                   node-image.sh needs) if missing, start dockerd;
#                                   prints DOCKER_HOST=... on stdout; exit 1 if it cannot start
#   scripts/kind/dockerd.sh stop    stop it, remove kind's network and what dockerd leaves in /var/run
#
# Its data root (images: the node image, about 1 GB) is under
# ~/.cache/execconform/kind/docker and survives between runs; sockets and
# state under /tmp/kind-work. It changes no iptables rule and no sysctl.
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
start)
	[[ $(id -u) == 0 ]] || die "a private dockerd needs root"
	ensure_packages
	step "dockerd start" start_dockerd
	echo "DOCKER_HOST=$DOCKER_HOST"
	;;
stop)
	if docker_up; then
		"$DOCKER_CLI" network rm kind >/dev/null 2>&1 || true
	fi
	stop_dockerd
	rmdir /var/run/docker/plugins /var/run/docker 2>/dev/null || true
	if pgrep -f "$DOCKER_RUN" >/dev/null; then
		die "left behind: $(pgrep -af "$DOCKER_RUN" | tr '\n' ';')"
	fi
	;;
*) die "usage: dockerd.sh start|stop" ;;
esac
