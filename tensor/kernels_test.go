package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
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
				out, att := make([]float32, B*T*C), make([]float32, B*H*T*T)
				eval := func() float64 {
					be.AttentionForward(out, att, qkv, B, T, C, H, causal)
					return dot(out, probe)
				}
				eval()
				dqkv := make([]float32, len(qkv))
				be.AttentionBackward(dqkv, probe, qkv, att, B, T, C, H, causal)
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
	out1, out2, att := make([]float32, B*T*C), make([]float32, B*T*C), make([]float32, B*H*T*T)
	be.AttentionForward(out1, att, qkv, B, T, C, H, true)
	for i := C; i < 3*C; i++ { // key and value of the last position
		qkv[(T-1)*3*C+i] += 1
	}
	be.AttentionForward(out2, att, qkv, B, T, C, H, true)
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

func TestGemmMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	shapes := [][3]int{{1, 1, 1}, {1, 37, 5}, {37, 1, 5}, {5, 5, 1}, {3, 4, 1000}, {65, 130, 67}, {128, 64, 256}}
	for i := 0; i < 20; i++ {
		shapes = append(shapes, [3]int{1 + r.IntN(150), 1 + r.IntN(150), 1 + r.IntN(300)})
	}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				a, b := randSlice(r, m*k, 1), randSlice(r, k*n, 1)
				lda, ldb := k, n
				if ta {
					lda = m
				}
				if tb {
					ldb = k
				}
				c0 := randSlice(r, m*n, 1)
				got, want := append([]float32(nil), c0...), append([]float32(nil), c0...)
				Gemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, 1, got, n)
				NaiveGemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, 1, want, n)
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*math.Sqrt(float64(k))*math.Max(1, math.Abs(float64(want[i]))) {
						t.Fatalf("m=%d n=%d k=%d ta=%v tb=%v: c[%d]=%g, want %g", m, n, k, ta, tb, i, got[i], want[i])
					}
				}
			}
		}
	}
}
