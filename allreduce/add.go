package allreduce

import (
	"math"

	"github.com/ringtrain/ringtrain/internal/vec"
)

// addTo adds src into dst element by element: dst[i] += src[i]. The slices
// must have the same length. It runs the kernels' vector add (package vec) on the
// calling goroutine; each element is still one float32 addition, so the
// result is the same bits as addToNaive's (NaN payloads aside when both
// operands are NaN).
func addTo(dst, src []float32) {
	vec.AddTo(dst, src[:len(dst)])
}

// addToNaive is the reference addTo is tested against.
func addToNaive(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}

// toBF16 rounds a float32 to bfloat16, to nearest with ties to even; NaNs stay
// NaNs (quiet) and overflow goes to infinity.
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// fromBF16 widens a bfloat16 to the float32 of the same value.
func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// encodeBF16 writes src rounded to bfloat16 into dst (len(dst) >= len(src)).
func encodeBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = toBF16(f)
	}
}

// decodeBF16 writes the float32 values of src into dst (len(dst) <= len(src)).
func decodeBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = fromBF16(h)
	}
}

// addBF16To adds the float32 values of src into dst: dst[i] += float32(src[i]).
func addBF16To(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] += fromBF16(h)
	}
}

// roundBF16 rounds every element of x to the nearest bfloat16 value, in place.
func roundBF16(x []float32) {
	for i, f := range x {
		x[i] = fromBF16(toBF16(f))
	}
}

// addInt64To adds src into dst element by element, dst[i] += src[i], and
// reports whether any sum overflowed the int64 range (the wrapped values are
// then in dst; the caller fails the operation). The slices must have the same
// length. Integer addition is associative, so the sum of an integer all-reduce
// does not depend on the order the ring adds in.
func addInt64To(dst, src []int64) (overflow bool) {
	src = src[:len(dst)]
	var of int64
	for i, s := range src {
		d := dst[i]
		r := d + s
		of |= (d ^ r) & (s ^ r) // negative when d and s agree in sign and r does not
		dst[i] = r
	}
	return of < 0
}
