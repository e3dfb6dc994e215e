#!/usr/bin/env bash
# Runs deploy/k8s against a real Kubernetes v1.37.2 control plane built here from
# the Go module proxy (docs/kubernetes.md, "Against a real API server").
#
#   scripts/k8s/e2e.sh build     # build the binaries into the cache (if absent) and print its path
#   scripts/k8s/e2e.sh phase1    # build if absent, then run the phase 1 checks
#   scripts/k8s/e2e.sh phase2    # root: a node on this machine, the example overlay trained
#                                # with faults (needs Docker, containerd, runc and
#                                # containernetworking-plugins from Debian)
#
# The binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy, kubectl) are cached in $RINGTRAIN_K8S_CACHE (default
# ~/.cache/ringtrain-k8s), under a key of the tools module and build script: a
# cold build takes about half an hour on two cores, a cached one nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export GOTOOLCHAIN=local

key=$(cat "$here/tools/go.mod" "$here/tools/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
cache="${RINGTRAIN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringtrain-k8s}"
bin="$cache/$key"

tools() {
	if [ -f "$bin/.complete" ]; then
		return
	fi
	echo "e2e.sh: building Kubernetes v1.37.2 and etcd into $bin (cold: about half an hour on two cores)" >&2
	mkdir -p "$cache"
	local tmp
	tmp=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	local t0=$SECONDS
	"$here/build.sh" "$tmp" >&2
	touch "$tmp/.complete"
	rm -rf "$bin"
	mv "$tmp" "$bin"
	trap - EXIT
	echo "e2e.sh: built in $((SECONDS - t0))s" >&2
}

harness() {
	(cd "$here/tools" && CGO_ENABLED=0 go build -o "$bin/k8se2e" ./cmd/k8se2e)
}

case "${1:-}" in
build)
	tools
	harness
	echo "$bin"
	;;
phase1)
	tools
	harness
	shift
	# The harness removes its directories on every way out but SIGKILL; this one
	# holds them, and goes with the shell.
	work=$(mktemp -d)
	case " $* " in *" -keep "*) ;; *) trap 'rm -rf "$work"' EXIT ;; esac
	TMPDIR="$work" "$bin/k8se2e" -bin "$bin" -repo "$root" "$@" phase1
	;;
phase2)
	tools
	harness
	shift
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/ringtrain" ./cmd/ringtrain)
	(cd "$here/coredns" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$work/coredns" .)
	"$root/deploy/docker/build.sh" >&2
	mkdir -p "$work/pause-ctx"
	(cd "$here/tools" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$work/pause-ctx/pause" ./cmd/pause)
	printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$work/pause-ctx/Dockerfile"
	DOCKER_BUILDKIT=0 docker build --pull=false -q -t ringtrain-e2e/pause:1 "$work/pause-ctx" >&2
	docker save ringtrain-e2e/pause:1 -o "$work/pause.tar"
	docker save ringtrain:dev -o "$work/ringtrain.tar"
	"$bin/k8se2e" -bin "$bin" -repo "$root" -images "$work" -tools "$work" -timeout 40m "$@" phase2
	;;
*)
	echo "usage: $0 build|phase1|phase2 [k8se2e flags, e.g. -keep]" >&2
	exit 2
	;;
esac
