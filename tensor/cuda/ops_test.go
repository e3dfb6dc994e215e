//go:build cuda

package cuda

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

// openDevice opens GPU 0 or skips, saying why.
func openDevice(t *testing.T) *Backend {
	t.Helper()
	b, err := Open(0, Options{})
	if err != nil {
		t.Skipf("no usable CUDA device: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// opCase runs one op on the CPU and on the device from the same inputs and compares
// every output.
type opCase struct {
	b    *Backend
	rng  *rand.Rand
	t    *testing.T
	bits map[string]uint64 // what -> hash of the device's output in the first run
	name string            // the shape, naming the outputs in bits
}

func (c *opCase) rand(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(c.rng.NormFloat64())
	}
	return x
}

// dev uploads host to a new device buffer (not Mirror: host is not kept reachable).
func (c *opCase) dev(host []float32) []float32 {
	buf := c.b.Alloc(len(host))
	c.b.Upload(buf, host)
	return buf
}

// poisoned returns a device buffer of n NaNs: an output an op must overwrite.
func (c *opCase) poisoned(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.NaN())
	}
	return c.dev(x)
}

// compare downloads got and checks it against want within atol + rtol·|want|.
func (c *opCase) compare(what string, got, want []float32, atol, rtol float64) {
	c.t.Helper()
	host := make([]float32, len(got))
	c.b.Download(host, got)
	if err := c.b.Record().Wait(); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	h := fnv.New64a()
	for _, v := range host {
		binary.Write(h, binary.LittleEndian, math.Float32bits(v))
	}
	key := c.name + " " + what
	if prev, ok := c.bits[key]; !ok {
		c.bits[key] = h.Sum64()
	} else if prev != h.Sum64() {
		c.t.Errorf("%s: the second run's output is not the first's, bit for bit", what)
	}
	worst, bad, scale := 0.0, 0, 0.0
	for i := range want {
		scale = max(scale, math.Abs(float64(want[i])))
		d := math.Abs(float64(host[i]) - float64(want[i]))
		if !(d <= atol+rtol*math.Abs(float64(want[i]))) {
			if bad++; bad <= 3 {
				// Errorf, not Fatalf: one run on a GPU reports every op that is off.
				c.t.Errorf("%s[%d] = %v on the device, %v on the CPU", what, i, host[i], want[i])
			}
		}
		if !math.IsNaN(d) {
			worst = max(worst, d)
		}
	}
	// Relative to the output's scale (element-wise relative errors mean nothing near
	// zero), strict fp32 must stay below 1e-5.
	rel := 0.0
	if scale > 0 {
		rel = worst / scale
	}
	if rel >= 1e-5 {
		c.t.Errorf("%s: max |diff| %.3g is %.3g of the largest |value| %.3g, want below 1e-5", what, worst, rel, scale)
	}
	c.t.Logf("%s: %d values, %d off, max |diff| %.3g (%.2g of the largest)", what, len(want), bad, worst, rel)
}

func clone(x []float32) []float32 { return append([]float32(nil), x...) }

// TestKernelResources checks that every kernel can be launched with the block size the
// backend uses (a kernel whose registers allow fewer threads would fail to launch), and
// logs what the driver compiled each to.
func TestKernelResources(t *testing.T) {
	b := openDevice(t)
	ks, err := b.Kernels()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		t.Logf("%-26s %3d registers, %5d bytes local, %5d bytes shared, up to %4d threads a block",
			k.Name, k.Registers, k.LocalBytes, k.StaticSharedBytes, k.MaxThreadsPerBlock)
		if k.MaxThreadsPerBlock < threads {
			t.Errorf("kernel %s takes blocks of at most %d threads; the backend launches %d", k.Name, k.MaxThreadsPerBlock, threads)
		}
	}
}

// TestOpsMatchCPU compares every op with the CPU backend on random shapes, outputs
// poisoned with NaN beforehand, and runs everything twice: the second run's outputs
// must be the first's bit for bit. It needs a GPU and skips without one.
func TestOpsMatchCPU(t *testing.T) {
	b := openDevice(t)
	bits := map[string]uint64{}
	for run := range 2 {
		t.Run(fmt.Sprintf("run%d", run+1), func(t *testing.T) { opsMatchCPU(t, b, bits) })
	}
}

func opsMatchCPU(t *testing.T, b *Backend, bits map[string]uint64) {
	cpu := tensor.NewCPU()
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 1))
		B, T, H := 1+rng.IntN(3), 1+rng.IntN(40), 1+rng.IntN(4)
		C := H * (1 + rng.IntN(32))
		V := 1 + rng.IntN(300)
		if seed == 3 {
			// GPT-2's head size, which attention's kernels unroll for.
			B, T, H, C = 2, 70, 3, 3*64
		}
		N := B * T
		name := fmt.Sprintf("B%d_T%d_C%d_H%d_V%d", B, T, C, H, V)
		t.Run(name, func(t *testing.T) {
			c := &opCase{b: b, rng: rng, t: t, bits: bits, name: name}
			// encoder
			inp := make([]int32, N)
			for i := range inp {
				inp[i] = int32(rng.IntN(V))
			}
			dinp := b.AllocInt32(N)
			b.UploadInt32(dinp, inp)
			wte, wpe := c.rand(V*C), c.rand(T*C)
			out := make([]float32, N*C)
			cpu.EncoderForward(out, inp, wte, wpe, B, T, C)
			dout := c.poisoned(N * C)
			b.EncoderForward(dout, dinp, c.dev(wte), c.dev(wpe), B, T, C)
			c.compare("encoder_forward", dout, out, 0, 0)
			g := c.rand(N * C)
			dwte, dwpe := c.rand(V*C), c.rand(T*C)
			ddwte, ddwpe := c.dev(dwte), c.dev(dwpe)
			cpu.EncoderBackward(dwte, dwpe, g, inp, B, T, C)
			b.EncoderBackward(ddwte, ddwpe, c.dev(g), dinp, B, T, C)
			c.compare("encoder_backward.dwte", ddwte, dwte, 1e-5, 1e-5)
			c.compare("encoder_backward.dwpe", ddwpe, dwpe, 1e-5, 1e-5)

			// layernorm
			x, w, bias := c.rand(N*C), c.rand(C), c.rand(C)
			ln, mean, rstd := make([]float32, N*C), make([]float32, N), make([]float32, N)
			cpu.LayerNormForward(ln, mean, rstd, x, w, bias, N, C)
			dln, dmean, drstd := c.poisoned(N*C), c.poisoned(N), c.poisoned(N)
			dx, dw, dbias := c.dev(x), c.dev(w), c.dev(bias)
			b.LayerNormForward(dln, dmean, drstd, dx, dw, dbias, N, C)
			c.compare("layernorm_forward", dln, ln, 1e-5, 1e-4)
			c.compare("layernorm_forward.mean", dmean, mean, 1e-6, 1e-5)
			c.compare("layernorm_forward.rstd", drstd, rstd, 1e-6, 1e-4)
			gi, gw, gb := c.rand(N*C), c.rand(C), c.rand(C)
			dgi, dgw, dgb := c.dev(gi), c.dev(gw), c.dev(gb)
			cpu.LayerNormBackward(gi, gw, gb, g, x, w, mean, rstd, N, C)
			b.LayerNormBackward(dgi, dgw, dgb, c.dev(g), dx, dw, dmean, drstd, N, C)
			c.compare("layernorm_backward.dinp", dgi, gi, 1e-4, 1e-4)
			c.compare("layernorm_backward.dw", dgw, gw, 1e-4, 1e-4)
			c.compare("layernorm_backward.db", dgb, gb, 1e-4, 1e-4)

			// matmul
			OC := 1 + rng.IntN(3*C)
			mw, mb := c.rand(OC*C), c.rand(OC)
			mo := make([]float32, N*OC)
			cpu.MatmulForward(mo, x, mw, mb, N, C, OC)
			dmo := c.poisoned(N * OC)
			dmw, dmb := c.dev(mw), c.dev(mb)
			b.MatmulForward(dmo, dx, dmw, dmb, N, C, OC)
			c.compare("matmul_forward", dmo, mo, 1e-4, 1e-4)
			go_ := c.rand(N * OC)
			mdi, mdw, mdb := c.rand(N*C), c.rand(OC*C), c.rand(OC)
			dmdi, dmdw, dmdb := c.dev(mdi), c.dev(mdw), c.dev(mdb)
			cpu.MatmulBackward(mdi, mdw, mdb, go_, x, mw, N, C, OC)
			b.MatmulBackward(dmdi, dmdw, dmdb, c.dev(go_), dx, dmw, N, C, OC)
			c.compare("matmul_backward.dinp", dmdi, mdi, 1e-4, 1e-4)
			c.compare("matmul_backward.dw", dmdw, mdw, 1e-4, 1e-4)
			c.compare("matmul_backward.dbias", dmdb, mdb, 1e-4, 1e-4)

			// attention, both masks
			for _, causal := range []bool{true, false} {
				qkv := c.rand(N * 3 * C)
				ao, lse := make([]float32, N*C), make([]float32, B*H*T)
				cpu.AttentionForward(ao, lse, qkv, B, T, C, H, causal)
				dqkv := c.dev(qkv)
				dao, dlse := c.poisoned(N*C), c.poisoned(B*H*T)
				b.AttentionForward(dao, dlse, dqkv, B, T, C, H, causal)
				c.compare(fmt.Sprintf("attention_forward(causal=%v)", causal), dao, ao, 1e-5, 1e-4)
				c.compare(fmt.Sprintf("attention_forward.lse(causal=%v)", causal), dlse, lse, 1e-5, 1e-4)
				ad := c.rand(N * 3 * C)
				dad := c.dev(ad)
				cpu.AttentionBackward(ad, g, qkv, ao, lse, B, T, C, H, causal)
				b.AttentionBackward(dad, c.dev(g), dqkv, dao, dlse, B, T, C, H, causal)
				c.compare(fmt.Sprintf("attention_backward(causal=%v)", causal), dad, ad, 1e-4, 1e-3)
			}
			// attention over packed rows: each row cut into segments at random, each
			// query seeing the keys from its segment's start
			start := make([]int32, N)
			for bi := range B {
				seg := 0
				for t := range T {
					if t > 0 && rng.IntN(4) == 0 {
						seg = t
					}
					start[bi*T+t] = int32(seg)
				}
			}
			dstart := b.AllocInt32(N)
			b.UploadInt32(dstart, start)
			{
				qkv := c.rand(N * 3 * C)
				ao, lse := make([]float32, N*C), make([]float32, B*H*T)
				cpu.AttentionForwardRanges(ao, lse, qkv, start, B, T, C, H)
				dqkv := c.dev(qkv)
				dao, dlse := c.poisoned(N*C), c.poisoned(B*H*T)
				b.AttentionForwardRanges(dao, dlse, dqkv, dstart, B, T, C, H)
				c.compare("attention_forward_ranges", dao, ao, 1e-5, 1e-4)
				c.compare("attention_forward_ranges.lse", dlse, lse, 1e-5, 1e-4)
				ad := c.rand(N * 3 * C)
				dad := c.dev(ad)
				cpu.AttentionBackwardRanges(ad, g, qkv, ao, lse, start, B, T, C, H)
				b.AttentionBackwardRanges(dad, c.dev(g), dqkv, dao, dlse, dstart, B, T, C, H)
				c.compare("attention_backward_ranges", dad, ad, 1e-4, 1e-3)
			}

			// decode attention over a cache
			pos0 := rng.IntN(T)
			Td := T - pos0
			kc, vc := c.rand(T*C), c.rand(T*C)
			dkc, dvc := c.dev(kc), c.dev(vc)
			q := c.rand(Td * 3 * C)
			do := make([]float32, Td*C)
			cpu.AttentionDecodeForward(do, kc, vc, q, Td, pos0, C, H)
			ddo := c.poisoned(Td * C)
			b.AttentionDecodeForward(ddo, dkc, dvc, c.dev(q), Td, pos0, C, H)
			c.compare("attention_decode", ddo, do, 1e-5, 1e-4)
			c.compare("attention_decode.kcache", dkc, kc, 0, 0)

			// element-wise
			gl := make([]float32, N*C)
			cpu.GeluForward(gl, x)
			dgl := c.poisoned(N * C)
			b.GeluForward(dgl, dx)
			c.compare("gelu_forward", dgl, gl, 1e-5, 1e-4)
			gd := c.rand(N * C)
			dgd := c.dev(gd)
			cpu.GeluBackward(gd, x, g)
			b.GeluBackward(dgd, dx, c.dev(g))
			c.compare("gelu_backward", dgd, gd, 1e-5, 1e-4)
			r := make([]float32, N*C)
			cpu.ResidualForward(r, x, g)
			dr := c.poisoned(N * C)
			b.ResidualForward(dr, dx, c.dev(g))
			c.compare("residual_forward", dr, r, 0, 0)
			acc := clone(x)
			dacc := c.dev(acc)
			cpu.Accumulate(acc, g)
			b.Accumulate(dacc, c.dev(g))
			c.compare("accumulate", dacc, acc, 0, 0)
			cpu.Scale(acc, 0.37)
			b.Scale(dacc, 0.37)
			c.compare("scale", dacc, acc, 0, 0)

			// cross-entropy
			logits := c.rand(N * V)
			targets := make([]int32, N)
			for i := range targets {
				targets[i] = int32(rng.IntN(V+1)) - 1
			}
			dtg := b.AllocInt32(N)
			b.UploadInt32(dtg, targets)
			dlog := c.dev(logits)
			losses := make([]float32, N)
			want := cpu.SoftmaxCrossEntropy(losses, logits, targets, N, V)
			dlosses := c.poisoned(N)
			got := b.SoftmaxCrossEntropy(dlosses, dlog, dtg, N, V)
			if math.Abs(got-want) > 1e-4*math.Abs(want)+1e-5 {
				t.Fatalf("softmax cross-entropy sum %v on the device, %v on the CPU", got, want)
			}
			c.compare("softmax_xent.probs", dlog, logits, 1e-6, 1e-4)
			c.compare("softmax_xent.losses", dlosses, losses, 1e-5, 1e-4)
			cpu.CrossEntropyBackward(logits, targets, 0.125, N, V)
			b.CrossEntropyBackward(dlog, dtg, 0.125, N, V)
			c.compare("xent_backward", dlog, logits, 1e-6, 1e-4)

			// norm and optimizer
			big := c.rand(3*65536 + 17)
			// Clipping's norm and AdamW give the CPU's bits.
			for _, chunk := range []int{65536, 1000, 5} {
				if got, want := b.SumSquares(c.dev(big), chunk), cpu.SumSquares(big, chunk); got != want {
					t.Errorf("SumSquares in chunks of %d: %v on the device, %v on the CPU", chunk, got, want)
				}
			}
			p, pg, pm, pv := c.rand(N*C), c.rand(N*C), c.rand(N*C), c.rand(N*C)
			for i := range pv {
				pv[i] = pv[i] * pv[i]
			}
			dp_, dm, dv := c.dev(p), c.dev(pm), c.dev(pv)
			cpu.AdamW(p, pg, pm, pv, 0.9, 0.95, 1e-8, 1e-3, 1.2, 0.999)
			b.AdamW(dp_, c.dev(pg), dm, dv, 0.9, 0.95, 1e-8, 1e-3, 1.2, 0.999)
			c.compare("adamw.p", dp_, p, 0, 0)
			c.compare("adamw.m", dm, pm, 0, 0)
			c.compare("adamw.v", dv, pv, 0, 0)
			if err := b.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
