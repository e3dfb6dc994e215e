package tensor

// EncoderForward implements Backend.
func (CPU) EncoderForward(out []float32, inp []int32, wte, wpe []float32, B, T, C int) {
	k := encFwdPool.get()
	k.out, k.inp, k.wte, k.wpe, k.T, k.C = out, inp, wte, wpe, T, C
	parallelRange(B*T, 16, k)
	encFwdPool.put(k)
}

type encFwd struct {
	out      []float32 // (B,T,C)
	inp      []int32   // (B,T)
	wte, wpe []float32 // (V,C), (maxT,C)
	T, C     int
}

var encFwdPool kernelPool[encFwd]

func (k *encFwd) do(lo, hi int) {
	C := k.C
	for bt := lo; bt < hi; bt++ {
		t, id := bt%k.T, int(k.inp[bt])
		o, we, pe := k.out[bt*C:bt*C+C], k.wte[id*C:id*C+C], k.wpe[t*C:t*C+C]
		for i := addVec(o, we, pe); i < C; i++ {
			o[i] = we[i] + pe[i]
		}
	}
}

// EncoderBackward implements Backend. Work is split over columns so that every gradient
// element is summed over positions in position order.
func (CPU) EncoderBackward(dwte, dwpe, dout []float32, inp []int32, B, T, C int) {
	k := encBwdPool.get()
	k.dwte, k.dwpe, k.dout, k.inp, k.BT, k.T, k.C = dwte, dwpe, dout, inp, B*T, T, C
	parallelRange(C, 32, k)
	encBwdPool.put(k)
}

type encBwd struct {
	dwte, dwpe, dout []float32 // (V,C), (maxT,C), (B,T,C)
	inp              []int32   // (B,T)
	BT, T, C         int
}

var encBwdPool kernelPool[encBwd]

func (k *encBwd) do(lo, hi int) {
	C := k.C
	for bt := range k.BT {
		t, id := bt%k.T, int(k.inp[bt])
		d := k.dout[bt*C+lo : bt*C+hi]
		addTo(k.dwte[id*C+lo:id*C+hi], d)
		addTo(k.dwpe[t*C+lo:t*C+hi], d)
	}
}
