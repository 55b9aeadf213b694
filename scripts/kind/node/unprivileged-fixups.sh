#!/bin/sh
# unprivileged-fixups.sh: runs before kind's entrypoint in a node started
# without --privileged (see scripts/kind/docker-shim). Docker then mounts
# /sys and the cgroup v1 hierarchies read-only, which systemd, the kind
# entrypoint and the kubelet all need to write to. A plain `remount,rw`
# fails (busy); a bind remount of each mount point works.
set -eu
mount -o remount,bind,rw /sys || echo "unprivileged-fixups: cannot remount /sys rw" >&2
for m in /sys/fs/cgroup /sys/fs/cgroup/*; do
	if mountpoint -q "$m"; then
		mount -o remount,bind,rw "$m" || echo "unprivileged-fixups: cannot remount $m rw" >&2
	fi
done
exec "$@"
