#!/usr/bin/env bash
# Regenerates the PTX of tensor/cuda/kernels/*.cu. Each PTX starts with a line that
# records the sha256 of its source; tensor/cuda's TestPTXMatchesSource fails when a
# .cu and its .ptx drift apart.
#
# Compilers: Debian's clang (apt-get install clang; no CUDA toolkit or headers needed:
# the sources define what they use), the default; or nvcc on a GPU machine with
# PTX_COMPILER=nvcc. The PTX targets sm_80 (Ampere and newer, H100/H200 included: the
# driver compiles it for the device at load time).
set -euo pipefail
cd "$(dirname "$0")/../../tensor/cuda/kernels"
compiler=${PTX_COMPILER:-clang}
arch=${PTX_ARCH:-sm_80}
for src in *.cu; do
	out=${src%.cu}.ptx
	sum=$(sha256sum "$src" | cut -d' ' -f1)
	tmp=$(mktemp)
	case $compiler in
	clang) clang --cuda-device-only --cuda-gpu-arch="$arch" -nocudalib -nocudainc -O3 -S -o "$tmp" "$src" ;;
	nvcc) nvcc -arch="$arch" -O3 --ptx -o "$tmp" "$src" ;;
	*) echo "PTX_COMPILER must be clang or nvcc, not $compiler" >&2; exit 2 ;;
	esac
	{
		echo "// ringtrain: generated from $src (sha256 $sum) by $compiler ($("$compiler" --version | head -1)); do not edit: run scripts/gpu/gen_ptx.sh"
		cat "$tmp"
	} >"$out"
	rm -f "$tmp"
	echo "$out: from $src sha256 $sum"
done
