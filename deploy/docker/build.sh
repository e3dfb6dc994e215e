#!/usr/bin/env bash
# Builds the ringtrain container image from a static binary, pulling nothing: the
# image starts FROM scratch, and the legacy builder is used so no builder image is
# fetched either.
#
#   deploy/docker/build.sh [--image NAME] [--corpus DIR]
#
# --image   image name (default ringtrain:dev, the name compose.yaml and
#           deploy/k8s use; also $RINGTRAIN_IMAGE)
# --corpus  a directory of text files to ship under /usr/share/ringtrain/corpus
set -euo pipefail

image="${RINGTRAIN_IMAGE:-ringtrain:dev}"
corpus=""
while [ $# -gt 0 ]; do
	case "$1" in
	--image) image="$2"; shift 2 ;;
	--image=*) image="${1#*=}"; shift ;;
	--corpus) corpus="$2"; shift 2 ;;
	--corpus=*) corpus="${1#*=}"; shift ;;
	-h|--help) sed -n '2,11p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ -n "$corpus" ] && [ ! -d "$corpus" ]; then
	echo "build.sh: --corpus $corpus: not a directory" >&2; exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

echo "== go build (static) -> $ctx/ringtrain"
(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/ringtrain" ./cmd/ringtrain)

mkdir -p "$ctx/etc" "$ctx/corpus" "$ctx/writable/var/lib/ringtrain" "$ctx/writable/data" "$ctx/writable/tmp" \
	"$ctx/writable/tls" "$ctx/writable/tls-ca"
chmod 1777 "$ctx/writable/tmp"
cp "$here/Dockerfile" "$ctx/Dockerfile"
printf 'root:x:0:0:root:/root:/sbin/nologin\nringtrain:x:65532:65532:ringtrain:/var/lib/ringtrain:/sbin/nologin\n' >"$ctx/etc/passwd"
printf 'root:x:0:\nringtrain:x:65532:\n' >"$ctx/etc/group"
if [ -n "$corpus" ]; then
	cp -R "$corpus/." "$ctx/corpus/"
fi

echo "== docker build -> $image"
DOCKER_BUILDKIT=0 docker build --pull=false --tag "$image" "$ctx"
