package safetensors

import (
	"encoding/binary"
	"io"
	"math"
	"unsafe"
)

// littleEndianHost is true when the machine stores numbers little-endian, the byte
// order of the format, so a []float32 can be viewed as its bytes without conversion.
var littleEndianHost = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// float32Bytes views f's memory as bytes. Callers use it only on a little-endian host.
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}

// WriteFloat32 writes f to w as little-endian F32 bytes. On a little-endian host it
// writes f's memory directly, without a copy; it does not retain f. It is the building
// block for Tensor.Encode functions that produce float32 data on the fly.
func WriteFloat32(w io.Writer, f []float32) error {
	if littleEndianHost {
		_, err := w.Write(float32Bytes(f))
		return err
	}
	const chunk = 4096
	var buf [4 * chunk]byte
	for len(f) > 0 {
		n := min(len(f), chunk)
		for i, v := range f[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		if _, err := w.Write(buf[:4*n]); err != nil {
			return err
		}
		f = f[n:]
	}
	return nil
}

// decodeToFloat32 converts raw little-endian data of dtype d into dst. The caller has
// checked that len(raw) == len(dst)*d.Size() and that d is convertible.
func decodeToFloat32(dst []float32, raw []byte, d DType) {
	le := binary.LittleEndian
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
		}
	case F16:
		for i := range dst {
			dst[i] = halfToFloat32(le.Uint16(raw[2*i:]))
		}
	}
}

// convertibleToFloat32 reports whether Float32 accepts dtype d.
func convertibleToFloat32(d DType) bool {
	switch d {
	case F32, F64, BF16, F16:
		return true
	}
	return false
}

// halfToFloat32 converts an IEEE 754 binary16 value to float32 exactly (every half
// value is representable); NaN payloads keep their top bits and stay NaN.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal half: value = mant * 2^-24, normal in float32.
	e := uint32(113) // exponent of 2^-14 in float32 bias, before normalising
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}
