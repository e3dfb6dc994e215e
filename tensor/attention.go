package tensor

import "math"

// The attention kernels run one goroutine per (batch, head) pair and express the work
// of a head as matrix products (gemmSerial) over blocks of attnBlock query rows: with
// the causal mask a block only meets the keys up to its last row, so about half of the
// T×T work is skipped. Softmax and its backward run row by row in between. att keeps
// the (T,T) probabilities of each head for backward, zero above the diagonal when
// causal.

// attnBlock is the number of query rows handled at a time. It is a constant (a multiple
// of both vector kernels' tile heights), so the shapes of the products, and with them
// the bits, depend on neither the micro-kernel nor the thread count.
const attnBlock = 42

// AttentionForward implements Backend.
func (CPU) AttentionForward(out, att, qkv []float32, B, T, C, H int, causal bool) {
	k := attnPool.get()
	k.out, k.att, k.qkv, k.T, k.C, k.H, k.causal = out, att, qkv, T, C, H, causal
	parallelRange(B*H, 1, (*attnFwd)(k))
	attnPool.put(k)
}

type attn struct {
	out, att, qkv []float32 // (B,T,C) (dout in backward), (B,H,T,T), (B,T,3C)
	dqkv          []float32 // (B,T,3C), backward only
	T, C, H       int
	causal        bool
}

// attnFwd and attnBwd run the heads [lo, hi) of the flattened (batch, head) index.
type (
	attnFwd attn
	attnBwd attn
)

var attnPool kernelPool[attn]

func (k *attnFwd) do(lo, hi int) {
	for bh := lo; bh < hi; bh++ {
		attentionForwardHead(k.out, k.att, k.qkv, bh/k.H, bh%k.H, k.T, k.C, k.H, k.causal)
	}
}

// attentionForwardHead computes head h of batch row b: scores S = scale·Q·Kᵀ, P =
// softmax(S) over the visible keys into att, and out = P·V.
func attentionForwardHead(out, att, qkv []float32, b, h, T, C, H int, causal bool) {
	hs, C3 := C/H, 3*C
	scale := float32(1 / math.Sqrt(float64(hs)))
	base := b*T*C3 + h*hs
	q, k, v := qkv[base:], qkv[base+C:], qkv[base+2*C:] // (T,hs), row stride 3C
	p := att[(b*H+h)*T*T : (b*H+h+1)*T*T]               // (T,T)
	o := out[b*T*C+h*hs:]                               // (T,hs), row stride C
	for i0 := 0; i0 < T; i0 += attnBlock {
		i1 := min(i0+attnBlock, T)
		keys := T
		if causal {
			keys = i1
		}
		gemmSerial(false, true, i1-i0, keys, hs, scale, q[i0*C3:], C3, k, C3, 0, p[i0*T:], T)
		for t := i0; t < i1; t++ {
			row := p[t*T : t*T+T]
			last := T
			if causal {
				last = t + 1
			}
			softmaxInPlace(row[:last])
			clear(row[last:])
		}
		gemmSerial(false, false, i1-i0, hs, keys, 1, p[i0*T:], T, v, C3, 0, o[i0*C:], C)
	}
}

// softmaxInPlace replaces x by softmax(x), summing in order.
func softmaxInPlace(x []float32) {
	maxv := float32(math.Inf(-1))
	for _, v := range x {
		maxv = max(maxv, v)
	}
	for i := expShiftVec(x, x, maxv); i < len(x); i++ {
		x[i] = expf(x[i] - maxv)
	}
	var sum float32
	for _, e := range x {
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// AttentionBackward implements Backend. Each (batch, head) pair writes only its own
// slices of dqkv, so the pairs run in parallel without changing any summation order.
func (CPU) AttentionBackward(dqkv, dout, qkv, att []float32, B, T, C, H int, causal bool) {
	k := attnPool.get()
	k.dqkv, k.out, k.qkv, k.att, k.T, k.C, k.H, k.causal = dqkv, dout, qkv, att, T, C, H, causal
	parallelRange(B*H, 1, (*attnBwd)(k))
	attnPool.put(k)
}

func (k *attnBwd) do(lo, hi int) {
	ds := getScratch(k.T * k.T)
	for bh := lo; bh < hi; bh++ {
		attentionBackwardHead(k.dqkv, k.out, k.qkv, k.att, ds, bh/k.H, bh%k.H, k.T, k.C, k.H, k.causal)
	}
	putScratch(ds)
}

// attentionBackwardHead adds head h of batch row b's gradients into dqkv; ds is (T,T)
// scratch. With dP = dO·Vᵀ and dS = P ⊙ (dP − rowsum(P ⊙ dP))·scale:
// dV += Pᵀ·dO, dQ += dS·K, dK += dSᵀ·Q.
func attentionBackwardHead(dqkv, dout, qkv, att, ds []float32, b, h, T, C, H int, causal bool) {
	hs, C3 := C/H, 3*C
	scale := float32(1 / math.Sqrt(float64(hs)))
	base := b*T*C3 + h*hs
	q, k, v := qkv[base:], qkv[base+C:], qkv[base+2*C:]
	dq, dk, dv := dqkv[base:], dqkv[base+C:], dqkv[base+2*C:]
	p := att[(b*H+h)*T*T : (b*H+h+1)*T*T]
	do := dout[b*T*C+h*hs:] // (T,hs), row stride C
	ds = ds[:T*T]
	for i0 := 0; i0 < T; i0 += attnBlock {
		i1 := min(i0+attnBlock, T)
		keys := T
		if causal {
			keys = i1
		}
		gemmSerial(false, true, i1-i0, keys, hs, 1, do[i0*C:], C, v, C3, 0, ds[i0*T:], T)
		for t := i0; t < i1; t++ {
			last := T
			if causal {
				last = t + 1
			}
			pr, dr := p[t*T:t*T+last], ds[t*T:t*T+last]
			var dot float32
			for j, pv := range pr {
				dot += pv * dr[j]
			}
			for j, pv := range pr {
				dr[j] = pv * (dr[j] - dot) * scale
			}
			clear(ds[t*T+last : t*T+keys])
		}
		gemmSerial(false, false, i1-i0, hs, keys, 1, ds[i0*T:], T, k, C3, 1, dq[i0*C3:], C3)
	}
	// Keys block by block: under the mask, keys [j0,j1) are seen by queries j0 onwards
	// (the entries of a diagonal block above the diagonal are zero in P and dS).
	for j0 := 0; j0 < T; j0 += attnBlock {
		j1 := min(j0+attnBlock, T)
		q0 := 0
		if causal {
			q0 = j0
		}
		gemmSerial(true, false, j1-j0, hs, T-q0, 1, p[q0*T+j0:], T, do[q0*C:], C, 1, dv[j0*C3:], C3)
		gemmSerial(true, false, j1-j0, hs, T-q0, 1, ds[q0*T+j0:], T, q[q0*C3:], C3, 1, dk[j0*C3:], C3)
	}
}

// NaiveAttentionForward is the reference for CPU.AttentionForward: one query row at a
// time, dot products in order.
func NaiveAttentionForward(out, att, qkv []float32, B, T, C, H int, causal bool) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	C3 := 3 * C
	for bh := 0; bh < B*H; bh++ {
		b, h := bh/H, bh%H
		for t := 0; t < T; t++ {
			q := qkv[(b*T+t)*C3+h*hs : (b*T+t)*C3+h*hs+hs]
			row := att[(bh*T+t)*T : (bh*T+t)*T+T] // (T)
			last := T
			if causal {
				last = t + 1
			}
			maxv := float32(math.Inf(-1))
			for t2 := 0; t2 < last; t2++ {
				k := qkv[(b*T+t2)*C3+C+h*hs : (b*T+t2)*C3+C+h*hs+hs]
				var s float32
				for i, qv := range q {
					s += qv * k[i]
				}
				s *= scale
				row[t2] = s
				if s > maxv {
					maxv = s
				}
			}
			var sum float32
			for t2 := 0; t2 < last; t2++ {
				e := float32(math.Exp(float64(row[t2] - maxv)))
				row[t2] = e
				sum += e
			}
			inv := 1 / sum
			for t2 := 0; t2 < last; t2++ {
				row[t2] *= inv
			}
			for t2 := last; t2 < T; t2++ {
				row[t2] = 0
			}
			o := out[(b*T+t)*C+h*hs : (b*T+t)*C+h*hs+hs]
			clear(o)
			for t2 := 0; t2 < last; t2++ {
				v := qkv[(b*T+t2)*C3+2*C+h*hs : (b*T+t2)*C3+2*C+h*hs+hs]
				a := row[t2]
				for i, vv := range v {
					o[i] += a * vv
				}
			}
		}
	}
}

// NaiveAttentionBackward is the reference for CPU.AttentionBackward.
func NaiveAttentionBackward(dqkv, dout, qkv, att []float32, B, T, C, H int, causal bool) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	C3 := 3 * C
	datt := make([]float32, T) // (T) scratch for one query row
	for bh := 0; bh < B*H; bh++ {
		b, h := bh/H, bh%H
		for t := 0; t < T; t++ {
			row := att[(bh*T+t)*T : (bh*T+t)*T+T]
			last := T
			if causal {
				last = t + 1
			}
			do := dout[(b*T+t)*C+h*hs : (b*T+t)*C+h*hs+hs]
			// out = sum_t2 att[t2] v[t2]: gradients into datt and dv.
			for t2 := 0; t2 < last; t2++ {
				off := (b*T+t2)*C3 + 2*C + h*hs
				v := qkv[off : off+hs]
				dv := dqkv[off : off+hs]
				var s float32
				a := row[t2]
				for i, g := range do {
					s += v[i] * g
					dv[i] += a * g
				}
				datt[t2] = s
			}
			// softmax backward: dpre[t2] = att[t2] * (datt[t2] - sum_j att[j] datt[j]).
			var dot float32
			for t2 := 0; t2 < last; t2++ {
				dot += row[t2] * datt[t2]
			}
			qoff := (b*T+t)*C3 + h*hs
			q := qkv[qoff : qoff+hs]
			dq := dqkv[qoff : qoff+hs]
			for t2 := 0; t2 < last; t2++ {
				dpre := row[t2] * (datt[t2] - dot) * scale
				koff := (b*T+t2)*C3 + C + h*hs
				k := qkv[koff : koff+hs]
				dk := dqkv[koff : koff+hs]
				for i := range q {
					dq[i] += dpre * k[i]
					dk[i] += dpre * q[i]
				}
			}
		}
	}
}
