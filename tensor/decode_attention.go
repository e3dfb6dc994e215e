package tensor

import "math"

// Decode attention is the attention of incremental generation: a few new query
// positions (one per generated token, or a chunk of a prompt) attend over the keys and
// values of every earlier position, held in a cache, instead of recomputing them. There
// is no backward: decoding does not train. One query row's scores are at most maxT
// long, so a row is kept whole and the softmax is the plain two-pass one; the heads of
// a call run in parallel when there is enough work, each writing only its own columns
// of out, so the split never changes a bit.

// decodeParallelWork is the amount of decode attention work (query rows × attended
// positions × channels) above which the heads of one call run in parallel. Below it,
// single-token decoding stays on the calling goroutine.
const decodeParallelWork = 1 << 16

// AttentionDecodeForward implements Backend.
func (CPU) AttentionDecodeForward(out, kcache, vcache, qkv []float32, T, pos0, C, H int) {
	for t := range T {
		row := qkv[t*3*C : (t+1)*3*C]
		copy(kcache[(pos0+t)*C:(pos0+t+1)*C], row[C:2*C])
		copy(vcache[(pos0+t)*C:(pos0+t+1)*C], row[2*C:])
	}
	k := attnDecodePool.get()
	k.out, k.kc, k.vc, k.qkv, k.T, k.pos0, k.C, k.H = out, kcache, vcache, qkv, T, pos0, C, H
	grain := 1 // one head per piece
	if T*(pos0+T)*C < decodeParallelWork {
		grain = H // all heads on the calling goroutine
	}
	parallelRange(H, grain, k)
	attnDecodePool.put(k)
}

type attnDecode struct {
	out, kc, vc, qkv []float32 // (T,C), (maxT,C), (maxT,C), (T,3C)
	T, pos0, C, H    int
}

var attnDecodePool kernelPool[attnDecode]

// do runs the heads [lo, hi).
func (k *attnDecode) do(lo, hi int) {
	row := getScratch(k.pos0 + k.T) // (pos0+T) one query row's scores, then weights
	for h := lo; h < hi; h++ {
		attentionDecodeHead(k.out, k.qkv, k.kc, k.vc, row, h, k.T, k.pos0, k.C, k.H)
	}
	putScratch(row)
}

// attentionDecodeHead computes head h of out (T,C) for the queries in qkv (T,3C) at
// positions pos0..pos0+T-1, over the keys and values of positions 0..pos0+t in kc and
// vc (maxT,C); row is scratch of at least pos0+T floats. Scores are dot4 products
// times 1/√hs, the softmax runs in float64 exp with a float32 sum in position order,
// and out accumulates the weighted values in position order.
func attentionDecodeHead(out, qkv, kc, vc, row []float32, h, T, pos0, C, H int) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	for t := 0; t < T; t++ {
		q := qkv[t*3*C+h*hs : t*3*C+h*hs+hs] // (hs)
		last := pos0 + t + 1
		maxv := float32(math.Inf(-1))
		for p := 0; p < last; p++ {
			s := dot4(q, kc[p*C+h*hs:p*C+h*hs+hs]) * scale
			row[p] = s
			if s > maxv {
				maxv = s
			}
		}
		var sum float32
		for p := 0; p < last; p++ {
			e := float32(math.Exp(float64(row[p] - maxv)))
			row[p] = e
			sum += e
		}
		inv := 1 / sum
		o := out[t*C+h*hs : t*C+h*hs+hs] // (hs)
		clear(o)
		for p := 0; p < last; p++ {
			a := row[p] * inv
			v := vc[p*C+h*hs : p*C+h*hs+hs]
			v = v[:len(o)]
			for i := range o {
				o[i] += a * v[i]
			}
		}
	}
}

// dot4 returns the dot product of a and b (len(b) >= len(a)), summed in four
// interleaved partial sums so that the multiply-adds do not wait on each other.
func dot4(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// NaiveAttentionDecodeForward is the reference for CPU.AttentionDecodeForward: it
// writes the new keys and values into the caches, then computes each query row and head
// on its own, dot products summed in order.
func NaiveAttentionDecodeForward(out, kcache, vcache, qkv []float32, T, pos0, C, H int) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	for t := range T {
		copy(kcache[(pos0+t)*C:(pos0+t+1)*C], qkv[t*3*C+C:t*3*C+2*C])
		copy(vcache[(pos0+t)*C:(pos0+t+1)*C], qkv[t*3*C+2*C:(t+1)*3*C])
	}
	row := make([]float32, pos0+T) // (pos0+T) one query row's probabilities
	for t := range T {
		last := pos0 + t + 1
		for h := range H {
			q := qkv[t*3*C+h*hs : t*3*C+h*hs+hs]
			maxv := float32(math.Inf(-1))
			for p := range last {
				k := kcache[p*C+h*hs : p*C+h*hs+hs]
				var s float32
				for i, qv := range q {
					s += qv * k[i]
				}
				row[p] = s * scale
				maxv = max(maxv, row[p])
			}
			var sum float32
			for p := range last {
				row[p] = float32(math.Exp(float64(row[p] - maxv)))
				sum += row[p]
			}
			o := out[t*C+h*hs : t*C+h*hs+hs]
			clear(o)
			for p := range last {
				v := vcache[p*C+h*hs : p*C+h*hs+hs]
				a := row[p] / sum
				for i, vv := range v {
					o[i] += a * vv
				}
			}
		}
	}
}
