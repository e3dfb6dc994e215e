//go:build !amd64 || purego

package tensor

var haveAVX2 = false

func geluForwardVec(out, inp []float32) int         { return 0 }
func geluBackwardVec(dinp, inp, dout []float32) int { return 0 }

func transposeVec(dst []float32, ld int, src []float32, lds, rows, cols int) (r, c int) {
	return 0, 0
}

func addVec(out, a, b []float32) int { return 0 }

func adamwVec(p, g, m, v []float32, c *[8]float32) int { return 0 }

func expShiftVec(dst, src []float32, shift float32) int { return 0 }

func maxVec(x []float32) (float32, int)                    { return 0, 0 }
func scaleVec(x []float32, c float32) int                  { return 0 }
func softmaxGradVec(ds, p []float32, d, scale float32) int { return 0 }

func lnVec(n int) bool { return false }

func sum8AVX2(x *float32, n int) float32                 { panic("unreachable") }
func dot8AVX2(a, b *float32, n int) float32              { panic("unreachable") }
func sumSq8AVX2(x *float32, n int) float64               { panic("unreachable") }
func sumSqDev8AVX2(x *float32, n int, m float32) float32 { panic("unreachable") }
func lnApplyAVX2(o, x, w, b *float32, n int, m, s float32) {
	panic("unreachable")
}
func lnBwdSumsAVX2(x, d, w *float32, n int, m, s float32) (float32, float32) {
	panic("unreachable")
}
func lnBwdApplyAVX2(di, x, d, w *float32, n int, m, s, dm, dnm float32) {
	panic("unreachable")
}
