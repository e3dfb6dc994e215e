package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

func randSlice(r *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * scale)
	}
	return s
}

// fdCheck compares an analytic gradient with central finite differences of
// f(x) = sum(forward(x) * probe) for every element of x.
func fdCheck(t *testing.T, name string, x, analytic []float32, eval func() float64) {
	t.Helper()
	const h = 1e-2
	worst := 0.0
	for i := range x {
		orig := x[i]
		x[i] = orig + h
		fp := eval()
		x[i] = orig - h
		fm := eval()
		x[i] = orig
		num := (fp - fm) / (2 * h)
		diff := math.Abs(num - float64(analytic[i]))
		tol := 2e-2 * math.Max(1, math.Abs(num))
		if diff > tol {
			t.Fatalf("%s[%d]: analytic %g, numeric %g (diff %g)", name, i, analytic[i], num, diff)
		}
		worst = math.Max(worst, diff/math.Max(1, math.Abs(num)))
	}
	t.Logf("%s: %d elements, worst relative difference %.2e", name, len(x), worst)
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestLayerNormGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	be := NewCPU()
	for _, shape := range [][2]int{{1, 3}, {5, 7}, {9, 16}} {
		N, C := shape[0], shape[1]
		t.Run(fmt.Sprintf("N%d_C%d", N, C), func(t *testing.T) {
			inp, w, b := randSlice(r, N*C, 1), randSlice(r, C, 1), randSlice(r, C, 1)
			probe := randSlice(r, N*C, 1)
			out, mean, rstd := make([]float32, N*C), make([]float32, N), make([]float32, N)
			eval := func() float64 {
				be.LayerNormForward(out, mean, rstd, inp, w, b, N, C)
				return dot(out, probe)
			}
			eval()
			dinp, dw, db := make([]float32, N*C), make([]float32, C), make([]float32, C)
			be.LayerNormBackward(dinp, dw, db, probe, inp, w, mean, rstd, N, C)
			fdCheck(t, "dinp", inp, dinp, eval)
			fdCheck(t, "dw", w, dw, eval)
			fdCheck(t, "db", b, db, eval)
		})
	}
}

func TestMatmulGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	be := NewCPU()
	for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 9, 70}, {70, 65, 3}} {
		N, C, OC := s[0], s[1], s[2]
		t.Run(fmt.Sprintf("N%d_C%d_OC%d", N, C, OC), func(t *testing.T) {
			inp, w, bias := randSlice(r, N*C, 1), randSlice(r, OC*C, 1), randSlice(r, OC, 1)
			probe := randSlice(r, N*OC, 1)
			out := make([]float32, N*OC)
			eval := func() float64 {
				be.MatmulForward(out, inp, w, bias, N, C, OC)
				return dot(out, probe)
			}
			eval()
			dinp, dw, db := make([]float32, N*C), make([]float32, OC*C), make([]float32, OC)
			be.MatmulBackward(dinp, dw, db, probe, inp, w, N, C, OC)
			fdCheck(t, "dinp", inp, dinp, eval)
			fdCheck(t, "dw", w, dw, eval)
			fdCheck(t, "dbias", bias, db, eval)
		})
	}
}

func TestAttentionGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	be := NewCPU()
	for _, s := range [][4]int{{1, 1, 4, 1}, {2, 5, 8, 2}, {1, 7, 12, 3}} {
		for _, causal := range []bool{true, false} {
			B, T, C, H := s[0], s[1], s[2], s[3]
			t.Run(fmt.Sprintf("B%d_T%d_C%d_H%d_causal=%v", B, T, C, H, causal), func(t *testing.T) {
				qkv := randSlice(r, B*T*3*C, 1)
				probe := randSlice(r, B*T*C, 1)
				out, lse := make([]float32, B*T*C), make([]float32, B*H*T)
				eval := func() float64 {
					be.AttentionForward(out, lse, qkv, B, T, C, H, causal)
					return dot(out, probe)
				}
				eval()
				dqkv := make([]float32, len(qkv))
				be.AttentionBackward(dqkv, probe, qkv, out, lse, B, T, C, H, causal)
				fdCheck(t, "dqkv", qkv, dqkv, eval)
			})
		}
	}
}

func TestAttentionCausalMask(t *testing.T) {
	// Changing a later key or value must not change an earlier output under the causal mask.
	r := rand.New(rand.NewPCG(7, 8))
	be := NewCPU()
	B, T, C, H := 1, 6, 8, 2
	qkv := randSlice(r, B*T*3*C, 1)
	out1, out2, lse := make([]float32, B*T*C), make([]float32, B*T*C), make([]float32, B*H*T)
	be.AttentionForward(out1, lse, qkv, B, T, C, H, true)
	for i := C; i < 3*C; i++ { // key and value of the last position
		qkv[(T-1)*3*C+i] += 1
	}
	be.AttentionForward(out2, lse, qkv, B, T, C, H, true)
	for i := 0; i < (T-1)*C; i++ {
		if out1[i] != out2[i] {
			t.Fatalf("output %d changed when only the last position changed", i)
		}
	}
}

func TestGeluGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	be := NewCPU()
	inp := randSlice(r, 257, 2)
	probe := randSlice(r, 257, 1)
	out := make([]float32, 257)
	eval := func() float64 { be.GeluForward(out, inp); return dot(out, probe) }
	eval()
	dinp := make([]float32, 257)
	be.GeluBackward(dinp, inp, probe)
	fdCheck(t, "dinp", inp, dinp, eval)
}

func TestEncoderGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	be := NewCPU()
	B, T, C, V := 2, 5, 6, 7
	inp := []int32{0, 3, 3, 6, 1, 2, 3, 0, 0, 5}
	wte, wpe := randSlice(r, V*C, 1), randSlice(r, T*C, 1)
	probe := randSlice(r, B*T*C, 1)
	out := make([]float32, B*T*C)
	eval := func() float64 { be.EncoderForward(out, inp, wte, wpe, B, T, C); return dot(out, probe) }
	eval()
	dwte, dwpe := make([]float32, V*C), make([]float32, T*C)
	be.EncoderBackward(dwte, dwpe, probe, inp, B, T, C)
	fdCheck(t, "dwte", wte, dwte, eval)
	fdCheck(t, "dwpe", wpe, dwpe, eval)
}

func TestSoftmaxCrossEntropyGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	be := NewCPU()
	N, V := 6, 11
	logits := randSlice(r, N*V, 2)
	targets := []int32{3, -1, 0, 10, 5, -1}
	work, losses := make([]float32, N*V), make([]float32, N)
	eval := func() float64 {
		copy(work, logits)
		return be.SoftmaxCrossEntropy(losses, work, targets, N, V)
	}
	total := eval()
	// Compare the loss with a direct float64 computation.
	var want float64
	for n := 0; n < N; n++ {
		if targets[n] < 0 {
			continue
		}
		var z float64
		for v := 0; v < V; v++ {
			z += math.Exp(float64(logits[n*V+v]))
		}
		want += math.Log(z) - float64(logits[n*V+int(targets[n])])
	}
	if math.Abs(total-want) > 1e-4*math.Abs(want) {
		t.Fatalf("loss %g, want %g", total, want)
	}
	be.CrossEntropyBackward(work, targets, 1, N, V)
	fdCheck(t, "dlogits", logits, append([]float32(nil), work...), eval)
}

// TestKernelsAllocateNothing runs every Backend method on shapes large enough to be
// split over goroutines and checks that, once warmed up, none allocates.
func TestKernelsAllocateNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	r := rand.New(rand.NewPCG(43, 44))
	be := NewCPU()
	B, T, C, H, V := 4, 64, 64, 4, 67
	N := B * T
	inp := make([]int32, N)
	targets := make([]int32, N)
	for i := range inp {
		inp[i], targets[i] = int32(r.IntN(V)), int32(r.IntN(V))
	}
	f := func(n int) []float32 { return randSlice(r, n, 1) }
	x, y, w, bias := f(N*C), f(N*C), f(4*C*C), f(4*C)
	wte, wpe := f(V*C), f(T*C)
	mean, rstd := f(N), f(N)
	qkv, lse, h, logits, losses := f(N*3*C), f(B*H*T), f(N*4*C), f(N*V), f(N)
	dx, dw, db, dqkv, dh := f(N*C), f(4*C*C), f(4*C), f(N*3*C), f(N*4*C)
	for name, run := range map[string]func(){
		"encoder": func() {
			be.EncoderForward(x, inp, wte, wpe, B, T, C)
			be.EncoderBackward(wte, wpe, x, inp, B, T, C)
		},
		"layernorm": func() {
			be.LayerNormForward(y, mean, rstd, x, w[:C], bias[:C], N, C)
			be.LayerNormBackward(dx, dw[:C], db[:C], y, x, w[:C], mean, rstd, N, C)
		},
		"matmul": func() {
			be.MatmulForward(h, x, w, bias, N, C, 4*C)
			be.MatmulBackward(dx, dw, db, h, x, w, N, C, 4*C)
		},
		"attention": func() {
			be.AttentionForward(y, lse, qkv, B, T, C, H, true)
			be.AttentionBackward(dqkv, x, qkv, y, lse, B, T, C, H, true)
		},
		"gelu": func() {
			be.GeluForward(dh, h)
			be.GeluBackward(h, dh, dh)
		},
		"residual": func() {
			be.ResidualForward(y, x, dx)
			be.Accumulate(y, x)
		},
		"sumsquares": func() {
			SumSquares(h, 1024)
			Scale(h, 1)
		},
		"crossentropy": func() {
			be.SoftmaxCrossEntropy(losses, logits, targets, N, V)
			be.CrossEntropyBackward(logits, targets, 0.5, N, V)
		},
	} {
		run()
		if a := testing.AllocsPerRun(20, run); a != 0 {
			t.Errorf("%s: %v allocations per call", name, a)
		}
	}
}

// TestLayerNormVectorMatchesScalar runs LayerNorm with and without the vector helpers
// and checks the same bits, and checks the forward against a float64 computation.
func TestLayerNormVectorMatchesScalar(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no vector LayerNorm on this CPU")
	}
	r := rand.New(rand.NewPCG(47, 48))
	be := NewCPU()
	N, C := 37, 136
	inp, w, b, dout := randSlice(r, N*C, 2), randSlice(r, C, 1), randSlice(r, C, 1), randSlice(r, N*C, 1)
	for i := range inp {
		inp[i] += 3 // a mean away from zero
	}
	type result struct{ out, mean, rstd, dinp, dw, db []float32 }
	run := func() result {
		x := result{make([]float32, N*C), make([]float32, N), make([]float32, N), make([]float32, N*C), make([]float32, C), make([]float32, C)}
		be.LayerNormForward(x.out, x.mean, x.rstd, inp, w, b, N, C)
		be.LayerNormBackward(x.dinp, x.dw, x.db, dout, inp, w, x.mean, x.rstd, N, C)
		return x
	}
	vec := run()
	haveAVX2 = false
	scalar := run()
	haveAVX2 = true
	for name, pair := range map[string][2][]float32{
		"out": {vec.out, scalar.out}, "mean": {vec.mean, scalar.mean}, "rstd": {vec.rstd, scalar.rstd},
		"dinp": {vec.dinp, scalar.dinp}, "dw": {vec.dw, scalar.dw}, "db": {vec.db, scalar.db},
	} {
		if i := firstDiff(pair[0], pair[1]); i >= 0 {
			t.Errorf("%s[%d]: vector %g, scalar %g", name, i, pair[0][i], pair[1][i])
		}
	}
	for row := range N {
		x := inp[row*C : row*C+C]
		var m, v float64
		for _, e := range x {
			m += float64(e)
		}
		m /= float64(C)
		for _, e := range x {
			v += (float64(e) - m) * (float64(e) - m)
		}
		s := 1 / math.Sqrt(v/float64(C)+layerNormEps)
		for i, e := range x {
			want := (float64(e)-m)*s*float64(w[i]) + float64(b[i])
			if d := math.Abs(float64(vec.out[row*C+i]) - want); d > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("out[%d,%d] = %g, want %g", row, i, vec.out[row*C+i], want)
			}
		}
	}
}
