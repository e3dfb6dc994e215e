#!/usr/bin/env bash
# Regenerates the Go code of every .proto file under proto/ with pinned tool versions.
# The generated files are committed; the build never runs this script.
#
#   scripts/genproto.sh          # needs protoc (Debian: apt-get install protobuf-compiler)
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12      # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0   # google.golang.org/grpc/cmd/protoc-gen-go-grpc
PROTOC_VERSION=3.21.12              # libprotoc, Debian bookworm's protobuf-compiler

bin="$PWD/.cache/protobin"
mkdir -p "$bin"
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

if ! command -v protoc >/dev/null; then
	echo "protoc not found: apt-get install protobuf-compiler (libprotoc ${PROTOC_VERSION})" >&2
	exit 1
fi
have=$(protoc --version | awk '{print $2}')
if [ "$have" != "$PROTOC_VERSION" ]; then
	echo "warning: protoc $have, generated files record $PROTOC_VERSION" >&2
fi

mapfile -t files < <(find proto -name '*.proto' | sort)
if [ "${#files[@]}" -eq 0 ]; then
	echo "no .proto files under proto/" >&2
	exit 0
fi
PATH="$bin:$PATH" protoc -I proto \
	--go_out=proto --go_opt=paths=source_relative \
	--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	"${files[@]}"
echo "generated: ${files[*]}"
