package tensor

import "math"

// AttentionForward implements Backend. Each (batch, head) pair is independent and runs
// on one goroutine.
func (CPU) AttentionForward(out, att, qkv []float32, B, T, C, H int, causal bool) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	C3 := 3 * C
	parallelFor(B*H, 1, func(lo, hi int) {
		for bh := lo; bh < hi; bh++ {
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
	})
}

// AttentionBackward implements Backend. Each (batch, head) pair writes only its own
// slices of dqkv, so the pairs run in parallel without changing any summation order.
func (CPU) AttentionBackward(dqkv, dout, qkv, att []float32, B, T, C, H int, causal bool) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	C3 := 3 * C
	parallelFor(B*H, 1, func(lo, hi int) {
		datt := make([]float32, T) // (T) scratch for one query row
		for bh := lo; bh < hi; bh++ {
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
	})
}
