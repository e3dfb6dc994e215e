package tensor

// EncoderForward implements Backend.
func (CPU) EncoderForward(out []float32, inp []int32, wte, wpe []float32, B, T, C int) {
	parallelFor(B*T, 16, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			t := bt % T
			o := out[bt*C : bt*C+C]
			we := wte[int(inp[bt])*C : int(inp[bt])*C+C]
			pe := wpe[t*C : t*C+C]
			for i := range o {
				o[i] = we[i] + pe[i]
			}
		}
	})
}

// EncoderBackward implements Backend. Work is split over columns so that every gradient
// element is summed over positions in position order.
func (CPU) EncoderBackward(dwte, dwpe, dout []float32, inp []int32, B, T, C int) {
	parallelFor(C, 32, func(lo, hi int) {
		for bt := 0; bt < B*T; bt++ {
			t := bt % T
			d := dout[bt*C+lo : bt*C+hi]
			we := dwte[int(inp[bt])*C+lo : int(inp[bt])*C+hi]
			pe := dwpe[t*C+lo : t*C+hi]
			for i, v := range d {
				we[i] += v
				pe[i] += v
			}
		}
	})
}
