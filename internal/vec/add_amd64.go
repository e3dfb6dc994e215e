//go:build amd64 && !purego

package vec

import "golang.org/x/sys/cpu"

// haveAVX2 selects the AVX2 loop; tests clear it to run the plain one.
var haveAVX2 = cpu.X86.HasAVX2

// addToAVX2 sets dst[i] += src[i] for i < n, n a multiple of 8.
//
//go:noescape
func addToAVX2(dst, src *float32, n int)

// addToVec does dst += src over the longest prefix it can in vector registers and
// returns its length.
func addToVec(dst, src []float32) int {
	n := len(src) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_, _ = dst[n-1], src[n-1]
	addToAVX2(&dst[0], &src[0], n)
	return n
}
