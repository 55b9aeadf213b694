#!/usr/bin/env bash
# node-image.sh: build a kind node image ($NODE_IMAGE, default
# execconform/kind-node:v1.34.4) offline, into the dockerd of lib.sh.
#
#   scripts/kind/node-image.sh          build what is missing (binaries, rootfs, image)
#   scripts/kind/node-image.sh bins     only the binaries (kubeadm, kubectl, ..., coredns, kind)
#
# What goes in (kind's own node image is built from images/base/Dockerfile of
# the kind module; this does the same without a registry or a Dockerfile):
#   - a Debian 12 rootfs from mmdebstrap: systemd, runc, iptables, CNI plugins...
#   - kind's base-image files (images/base/files of sigs.k8s.io/kind v0.33.0)
#   - containerd 1.7, its shim and ctr, as built by scripts/e2e-local.sh
#   - kubelet (from e2e-local.sh), kubeadm and kubectl (built here)
#   - the control-plane images, packed locally from binaries and imported into
#     the node's containerd under the names kubeadm v1.34.4 expects
#   - a bridge CNI config (kind's kindnetd would have to be pulled)
# Everything is cached under $KIND_CACHE: a second run only checks stamps.
#
# If dockerd is not running, it is started and stopped again at the end.
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIND_SRC=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $KIND_SRC/images/base/files ]] || die "kind module source not found"

# ------------------------------------------------------------ binaries ----

# stamp_ok NAME VALUE FILES...: the stamp of NAME is VALUE and every file exists.
stamp_ok() {
	local name=$1 value=$2 f
	shift 2
	[[ -f $BIN/.stamp-$name && $(cat "$BIN/.stamp-$name") == "$value" ]] || return 1
	for f; do [[ -f $BIN/$f ]] || return 1; done
}

# build_kube: the Kubernetes commands e2e-local.sh does not build. A wrapper
# module (kube/go.mod, a copy of e2e/tools/kube's) requires k8s.io/kubernetes
# and replaces each k8s.io/* staging module with its $STAGING_VERSION release,
# since k8s.io/kubernetes's own go.mod points them at ./staging.
build_kube() {
	local src=$KIND_CACHE/src/kube stamp
	mkdir -p "$src"
	cp "$KIND_DIR/kube/go.mod" "$KIND_DIR/kube/go.sum" "$KIND_DIR/kube/tools.go" "$src/"
	stamp=$({ go version; cat "$src"/go.mod "$src"/tools.go; } | sha256sum | cut -c1-16)
	stamp_ok kube "$stamp" kubeadm kubectl kube-controller-manager kube-scheduler kube-proxy && return 0
	log "building kubeadm kubectl kube-controller-manager kube-scheduler kube-proxy $K8S_VERSION"
	# Same flags as e2e-local.sh (cgo on): the Go build cache it filled is reused.
	(cd "$src" && "${NICE[@]}" env GOMAXPROCS=1 GOWORK=off GOFLAGS=-mod=mod \
		go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$BIN/" \
		k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-proxy) >&2
	echo "$stamp" >"$BIN/.stamp-kube"
}

# build_goinstall NAME MODULE@VERSION: a module without replace directives.
build_goinstall() {
	local name=$1 mod=$2 stamp
	stamp=$({ go version; echo "$mod"; } | sha256sum | cut -c1-16)
	stamp_ok "$name" "$stamp" "$name" && return 0
	log "building $mod"
	"${NICE[@]}" env GOMAXPROCS=1 GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS=-mod=mod \
		go install -trimpath -buildvcs=false -ldflags="-s -w" "$mod" >&2
	echo "$stamp" >"$BIN/.stamp-$name"
}

build_bins() {
	mkdir -p "$BIN"
	local f
	for f in etcd kube-apiserver kubelet containerd containerd-shim-runc-v2 ctr pause mkimage; do
		[[ -x $E2E_BIN/$f ]] || die "$E2E_BIN/$f missing: run scripts/e2e-local.sh build first"
	done
	step "build kube binaries" build_kube
	step "build coredns" build_goinstall coredns "github.com/coredns/coredns@$COREDNS_VERSION"
	step "build kind" build_goinstall kind "sigs.k8s.io/kind@$KIND_VERSION"
}

# -------------------------------------------------------------- rootfs ----

# Packages of kind's base image (images/base/Dockerfile), minus what needs a
# pull or is not used here (nfs, iscsi, fuse-overlayfs), plus runc and the
# CNI plugins, which kind builds from source instead.
ROOTFS_PACKAGES=systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,bash,ca-certificates,procps,runc,containernetworking-plugins,socat,e2fsprogs,ebtables
ROOTFS_SUITE=bookworm

# build_rootfs: a tar of the Debian rootfs, cached by its package list.
ROOTFS_TAR=$KIND_CACHE/rootfs/$ROOTFS_SUITE-$(echo "$ROOTFS_SUITE $ROOTFS_PACKAGES" | sha256sum | cut -c1-12).tar
build_rootfs() {
	[[ -f $ROOTFS_TAR ]] && return 0
	mkdir -p "$KIND_CACHE/rootfs"
	log "mmdebstrap $ROOTFS_SUITE"
	# unshare -m: the mounts mmdebstrap makes in its chroot (proc, sys, dev)
	# die with that namespace, whatever happens. No docs or locales: smaller.
	"${NICE[@]}" unshare --mount --propagation private \
		mmdebstrap --mode=root --format=tar --variant=minbase --include="$ROOTFS_PACKAGES" \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		"$ROOTFS_SUITE" "$ROOTFS_TAR.tmp" http://deb.debian.org/debian >&2
	mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
}

# --------------------------------------------------------------- images ----

# copy_with_libs DIR FILE...: copy host FILEs (or directories) to the same
# paths under DIR, with the shared libraries ldd finds for them.
copy_with_libs() {
	local dir=$1 f lib
	shift
	for f; do
		mkdir -p "$dir$(dirname "$f")"
		cp -a "$f" "$dir$f"
		[[ -f $f ]] || continue
		for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+' || true); do
			[[ -e $dir$lib ]] && continue
			mkdir -p "$dir$(dirname "$lib")"
			cp -L "$lib" "$dir$lib"
		done
	done
}

# pack_image REF BINARY [ENTRYPOINT]: a one-binary image, REF, in dockerd.
# The binaries of e2e-local.sh are cgo builds (dynamically linked): their
# libraries, found with ldd, go in too. $EXTRA_FILES: more host files.
pack_image() {
	local ref=$1 bin=$2 entry=${3:-} dir
	dir=$KIND_WORK/img/${ref//[\/:]/_}
	rm -rf "$dir"
	mkdir -p "$dir/usr/local/bin" "$dir/etc" "$dir/tmp" "$dir/var/run" "$dir/usr/sbin"
	chmod 1777 "$dir/tmp"
	copy_with_libs "$dir" "$bin"
	mv "$dir$bin" "$dir/usr/local/bin/"
	if [[ -n ${EXTRA_FILES:-} ]]; then
		# shellcheck disable=SC2086 # a list of paths without spaces
		copy_with_libs "$dir" $EXTRA_FILES
	fi
	# kube-proxy runs iptables (the real image is distroless-iptables): the
	# nft variant under the names it calls.
	if [[ -f $dir/usr/sbin/xtables-nft-multi ]]; then
		local n
		for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
			ln -sf xtables-nft-multi "$dir/usr/sbin/$n"
		done
	fi
	printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
	local changes=(--change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
	[[ -n $entry ]] && changes+=(--change "ENTRYPOINT [\"$entry\"]")
	tar -C "$dir" -c . | "$DOCKER_CLI" import "${changes[@]}" - "$ref" >/dev/null
	rm -rf "$dir"
}

# import_images ROOTFS: the images into the node's containerd store
# (ROOTFS/var/lib/containerd), by a containerd of the same version run on the
# host for the purpose, the way kind's own node-image build does it
# (pkg/build/nodeimage/imageimporter.go: `ctr images import --no-unpack`;
# containerd's CRI unpacks on first use). Content only: no mounts.
import_images() {
	local rootfs=$1 run=$KIND_WORK/import-containerd pid i
	local reg=registry.k8s.io v=$K8S_VERSION
	pack_image "$reg/kube-apiserver:$v" "$E2E_BIN/kube-apiserver"
	pack_image "$reg/kube-controller-manager:$v" "$BIN/kube-controller-manager"
	pack_image "$reg/kube-scheduler:$v" "$BIN/kube-scheduler"
	EXTRA_FILES="/usr/sbin/xtables-nft-multi /usr/lib/x86_64-linux-gnu/xtables $(command -v conntrack || true)" \
		pack_image "$reg/kube-proxy:$v" "$BIN/kube-proxy"
	pack_image "$reg/etcd:$ETCD_TAG" "$E2E_BIN/etcd"
	pack_image "$reg/coredns/coredns:$COREDNS_VERSION" "$BIN/coredns" /usr/local/bin/coredns
	"$DOCKER_CLI" save -o "$KIND_WORK/images.tar" \
		"$reg/kube-apiserver:$v" "$reg/kube-controller-manager:$v" "$reg/kube-scheduler:$v" \
		"$reg/kube-proxy:$v" "$reg/etcd:$ETCD_TAG" "$reg/coredns/coredns:$COREDNS_VERSION"
	# busybox (for the test pod) and pause, packed by e2e-local.sh's mkimage.
	"$E2E_BIN/mkimage" -out "$KIND_WORK/images-mk.tar" -busybox "$(command -v busybox)" \
		-busybox-name "docker.io/$BUSYBOX_IMAGE" -pause "$E2E_BIN/pause" -pause-name "$reg/pause:$PAUSE_TAG"

	rm -rf "$run"
	mkdir -p "$run" "$rootfs/var/lib/containerd"
	cat >"$run/config.toml" <<EOF
version = 2
root = "$rootfs/var/lib/containerd"
state = "$run/state"
[grpc]
  address = "$run/sock"
[ttrpc]
  address = "$run/sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$run/opt"
EOF
	"$E2E_BIN/containerd" --config "$run/config.toml" >"$run/log" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		"$E2E_BIN/ctr" --address "$run/sock" version >/dev/null 2>&1 && break
		sleep 0.1
	done
	local f rc=0
	for f in "$KIND_WORK/images.tar" "$KIND_WORK/images-mk.tar"; do
		# (kind also labels them io.cri-containerd.pinned=pinned; ctr 1.7 has no --label.)
		"$E2E_BIN/ctr" --address "$run/sock" -n k8s.io images import --no-unpack --all-platforms "$f" >&2 || rc=1
	done
	"$E2E_BIN/ctr" --address "$run/sock" -n k8s.io images ls -q >&2 || true
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	rm -rf "$run" "$KIND_WORK/images.tar" "$KIND_WORK/images-mk.tar"
	((rc == 0)) || die "image import failed"
}

# ----------------------------------------------------------- node image ----

# assemble DIR: kind's base image, in a directory.
assemble() {
	local r=$1 f=$KIND_SRC/images/base/files
	# kind's files, with the Dockerfile's modes.
	install -d -m 0755 "$r/kind" "$r/kind/bin" "$r/kind/manifests" "$r/etc/kubernetes/manifests"
	install -m 0755 "$f"/usr/local/bin/* "$r/usr/local/bin/"
	install -m 0644 "$f"/kind/README.txt "$r/kind/"
	install -m 0755 "$f"/kind/bin/* "$r/kind/bin/"
	install -d -m 0755 "$r/LICENSES" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" \
		"$r/etc/systemd/system/kubelet.service.d"
	install -m 0644 "$f"/LICENSES/* "$r/LICENSES/"
	install -m 0644 "$f"/etc/crictl.yaml "$r/etc/"
	install -m 0644 "$f"/etc/default/* "$r/etc/default/"
	install -m 0644 "$f"/etc/sysctl.d/* "$r/etc/sysctl.d/"
	install -m 0644 "$f"/etc/systemd/system/*.service "$f"/etc/systemd/system/*.slice "$r/etc/systemd/system/"
	install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
	# Not kind's containerd config: see node/config.toml.
	install -m 0644 "$KIND_DIR/node/config.toml" "$r/etc/containerd/config.toml"
	# A lower OOMScoreAdjust needs CAP_SYS_RESOURCE, which no one has here:
	# systemd would refuse to start containerd.
	sed -i '/^OOMScoreAdjust=/d' "$r/etc/systemd/system/containerd.service"
	# No fuse-overlayfs snapshotter (a rootless thing).
	rm -f "$r/etc/systemd/system/containerd-fuse-overlayfs.service"

	install -m 0755 "$E2E_BIN/containerd" "$E2E_BIN/containerd-shim-runc-v2" "$E2E_BIN/ctr" "$r/usr/local/bin/"
	install -m 0755 "$E2E_BIN/kubelet" "$BIN/kubeadm" "$BIN/kubectl" "$r/usr/bin/"
	# kind looks for runc in /usr/local/sbin (its build); Debian's is in /usr/sbin.
	ln -sf /usr/sbin/runc "$r/usr/local/sbin/runc"

	# CNI: Debian's plugins are in /usr/lib/cni; kubelet/containerd look in /opt/cni/bin.
	install -d -m 0755 "$r/opt/cni" "$r/etc/cni/net.d"
	ln -sfn /usr/lib/cni "$r/opt/cni/bin"
	install -m 0644 "$KIND_DIR/node/10-bridge.conflist" "$r/etc/cni/net.d/"
	install -m 0644 "$KIND_DIR/node/default-storage.yaml" "$r/kind/manifests/"
	install -m 0755 "$KIND_DIR/node/unprivileged-fixups.sh" "$r/kind/bin/"
	# kind reads the Kubernetes version of the node from here.
	echo "$K8S_VERSION" >"$r/kind/version"

	# What the RUN lines of kind's Dockerfile do.
	find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
	rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
		"$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
		"$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
	echo "ReadKMsg=no" >>"$r/etc/systemd/journald.conf"
	ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
	# systemctl works offline in a chroot (it only writes symlinks).
	chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
	chroot "$r" systemctl mask systemd-binfmt.service >/dev/null 2>&1
	[[ -L $r/etc/systemd/system/multi-user.target.wants/kubelet.service ]] || die "systemctl enable failed"
}

# image_stamp: a hash of every input of the node image.
image_stamp() {
	{
		echo "$ROOTFS_TAR $NODE_IMAGE $ETCD_TAG $PAUSE_TAG $COREDNS_VERSION"
		sha256sum "$0" "$KIND_DIR/lib.sh" "$KIND_DIR"/node/* "$BIN"/.stamp-* | cut -d' ' -f1
		stat -c '%n %s %Y' "$E2E_BIN"/{etcd,kube-apiserver,kubelet,containerd,containerd-shim-runc-v2,ctr,pause}
	} | sha256sum | cut -c1-16
}

build_node_image() {
	local stamp r=$KIND_WORK/node-rootfs have
	stamp=$(image_stamp)
	have=$("$DOCKER_CLI" image inspect -f '{{index .Config.Labels "execconform.stamp"}}' "$NODE_IMAGE" 2>/dev/null || true)
	if [[ $have == "$stamp" ]]; then
		log "$NODE_IMAGE is up to date"
		return 0
	fi
	log "building $NODE_IMAGE"
	rm -rf "$r"
	mkdir -p "$r"
	tar -C "$r" -xf "$ROOTFS_TAR"
	assemble "$r"
	import_images "$r"
	# kind's Dockerfile: ENV container=docker and ENTRYPOINT
	# ["/usr/local/bin/entrypoint", "/sbin/init"]; our fixups first. (Its
	# STOPSIGNAL SIGRTMIN+3 cannot be set by `docker import`; kind removes
	# nodes with `docker rm -f` anyway.)
	tar -C "$r" -c . | "${NICE[@]}" "$DOCKER_CLI" import \
		--change 'ENV container=docker' \
		--change "LABEL execconform.stamp=$stamp" \
		--change 'ENTRYPOINT ["/kind/bin/unprivileged-fixups.sh", "/usr/local/bin/entrypoint", "/sbin/init"]' \
		- "$NODE_IMAGE" >/dev/null
	rm -rf "$r"
	# The one-binary images are in the node image now; drop them from dockerd.
	"$DOCKER_CLI" image ls --format '{{.Repository}}:{{.Tag}}' | grep '^registry.k8s.io/' |
		xargs -r "$DOCKER_CLI" rmi >/dev/null || true
	# Earlier builds of the node image (now untagged) in our private dockerd.
	"$DOCKER_CLI" image prune -f >/dev/null || true
}

main() {
	[[ $(id -u) == 0 ]] || die "must run as root"
	mkdir -p "$KIND_WORK" "$KIND_CACHE"
	ensure_packages
	build_bins
	[[ ${1:-} == bins ]] && return 0
	step "rootfs (mmdebstrap)" build_rootfs
	if ! docker_up; then
		step "dockerd start" start_dockerd
		trap stop_dockerd EXIT
	fi
	# Not under `||`: bash would then ignore set -e inside, even in a subshell.
	step "node image" build_node_image
}

main "$@"
