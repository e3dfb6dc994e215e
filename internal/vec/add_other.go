//go:build !amd64 || purego

package vec

// haveAVX2 is false where there is no assembly: AddTo runs the plain loop.
var haveAVX2 = false

func addToVec(dst, src []float32) int { return 0 }
