#!/usr/bin/env bash
# Builds what scripts/gpu/check.sh runs, into DIR (default .cache/gpu): the GPU binary
# (-tags cuda) and the test binaries of tensor/cuda and model. Needs only Go: no CUDA
# toolkit, no cgo (CGO_ENABLED=0; purego reaches the libraries at run time).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-.cache/gpu}
mkdir -p "$out"
export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# -s -w: no symbol tables, so that the three binaries travel small (about 40 MB).
flags=(-trimpath -ldflags=-s\ -w)
go build -tags cuda "${flags[@]}" -o "$out/ringtrain" ./cmd/ringtrain
go test -c -tags cuda "${flags[@]}" -o "$out/cuda.test" ./tensor/cuda
go test -c -tags cuda "${flags[@]}" -o "$out/model.test" ./model
echo "built $out/ringtrain, $out/cuda.test, $out/model.test"
