#!/usr/bin/env bash
# Builds the Kubernetes v1.37.2 commands and etcd from the module proxy into $1
# (default: the cache dir that e2e.sh uses). Only the pinned tools module is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUTDIR}"
mkdir -p "$out"
export GOTOOLCHAIN=local CGO_ENABLED=0
ver=v1.37.2
pkg=k8s.io/component-base/version
ld="-s -w"
for p in $pkg k8s.io/client-go/pkg/version; do
	ld+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=37"
	ld+=" -X $p.gitCommit=v1.37.2-modproxy -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
done
cd "$here/tools"
start=$(date +%s)
go build -ldflags "$ld" -o "$out/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kubectl \
	k8s.io/kubernetes/cmd/kubelet \
	k8s.io/kubernetes/cmd/kube-proxy
go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
echo "build.sh: built $(ls "$out" | tr '\n' ' ')in $(( $(date +%s) - start ))s"
