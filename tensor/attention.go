package tensor

import "math"

// The attention kernels never hold a (T,T) matrix: they walk a head's scores in tiles
// of attnBlock query rows by attnKeyBlock keys, and keep only a tile of scores at a
// time, in scratch owned by the goroutine.
//
// Forward runs an online softmax over the key tiles of each query tile: a row's running
// maximum m and sum l of exp(s - m) are updated tile by tile, the output rows
// accumulated so far are rescaled by exp(m_old - m_new) when the maximum grows, and
// out = acc / l at the end. Only the log-sum-exp m + log l of each row is kept for
// backward, (B,H,T) instead of the (B,H,T,T) probabilities.
//
// Backward recomputes each tile of probabilities, P = exp(s - lse), from q, k and the
// saved log-sum-exp, and uses D = rowsum(dout ⊙ out), which equals rowsum(P ⊙ dP), for
// the softmax backward: dS = P ⊙ (dP - D)·scale.
//
// Both run one goroutine per (batch, head) pair, and a head's tiles in a fixed order on
// that goroutine; the tile products are gemmSerial calls. With the causal mask a query
// tile meets only the keys up to its last row, so tiles wholly above the diagonal are
// skipped and the last tile it meets is cut at its last row.

// attnBlock is the number of query rows of a tile and attnKeyBlock the number of keys.
// They are constants (attnBlock a multiple of both vector kernels' tile heights,
// attnKeyBlock of their widths), so the shapes of the products, and with them the bits,
// depend on neither the micro-kernel nor the thread count. A query tile meets all the
// keys of a sequence of up to attnKeyBlock positions in one tile.
const (
	attnBlock    = 42
	attnKeyBlock = 256
)

// AttentionForward implements Backend.
func (CPU) AttentionForward(out, lse, qkv []float32, B, T, C, H int, causal bool) {
	attentionForward(out, lse, qkv, nil, B, T, C, H, causal)
}

// AttentionForwardRanges implements Backend.
func (CPU) AttentionForwardRanges(out, lse, qkv []float32, start []int32, B, T, C, H int) {
	attentionForward(out, lse, qkv, start, B, T, C, H, true)
}

func attentionForward(out, lse, qkv []float32, start []int32, B, T, C, H int, causal bool) {
	k := attnPool.get()
	k.out, k.lse, k.qkv, k.start, k.T, k.C, k.H, k.causal = out, lse, qkv, start, T, C, H, causal
	parallelRange(B*H, 1, (*attnFwd)(k))
	k.start = nil
	attnPool.put(k)
}

type attn struct {
	out, lse, qkv []float32 // (B,T,C), (B,H,T), (B,T,3C)
	dout, dqkv    []float32 // (B,T,C), (B,T,3C); backward only
	start         []int32   // (B,T) first key of each query's causal range; nil: 0
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
	// One tile of scores, then each tile row's running maximum and sum.
	buf := getScratch(attnBlock*attnKeyBlock + 2*attnBlock)
	for bh := lo; bh < hi; bh++ {
		attentionForwardHead(k.out, k.lse, k.qkv, k.start, buf, bh/k.H, bh%k.H, k.T, k.C, k.H, k.causal)
	}
	putScratch(buf)
}

// attentionForwardHead computes head h of batch row b: out = softmax(scale·Q·Kᵀ)·V and
// the log-sum-exp of each row of scale·Q·Kᵀ (over the visible keys) into lse. buf is
// scratch of attnBlock·(attnKeyBlock+2) floats. With start (B,T) set (causal only),
// query t sees the keys [start[b·T+t], t]: key tiles wholly before the query tile's
// smallest start are skipped, and a row's running maximum and sum begin at the tile
// that holds its start (the first tile, 0, when start is nil).
func attentionForwardHead(out, lse, qkv []float32, start []int32, buf []float32, b, h, T, C, H int, causal bool) {
	hs, C3 := C/H, 3*C
	scale := float32(1 / math.Sqrt(float64(hs)))
	base := b*T*C3 + h*hs
	q, k, v := qkv[base:], qkv[base+C:], qkv[base+2*C:]                                    // (T,hs), row stride 3C
	o := out[b*T*C+h*hs:]                                                                  // (T,hs), row stride C
	l := lse[(b*H+h)*T : (b*H+h+1)*T]                                                      // (T)
	s := buf[:attnBlock*attnKeyBlock]                                                      // (rows,w) scores, then probabilities
	rowMax := buf[attnBlock*attnKeyBlock : attnBlock*attnKeyBlock+attnBlock]               // (rows) running maximum m
	rowTotal := buf[attnBlock*attnKeyBlock+attnBlock : attnBlock*attnKeyBlock+2*attnBlock] // (rows) running Σ exp(s - m)
	for i0 := 0; i0 < T; i0 += attnBlock {
		i1 := min(i0+attnBlock, T)
		rows := i1 - i0
		keys := T
		if causal {
			keys = i1
		}
		var st []int32 // (rows) the tile rows' starts; nil: every row starts at 0
		jFirst := 0
		if start != nil {
			st = start[b*T+i0 : b*T+i1]
			jFirst = int(minInt32(st)) / attnKeyBlock * attnKeyBlock
		}
		for j0 := jFirst; j0 < keys; j0 += attnKeyBlock {
			w := min(attnKeyBlock, keys-j0)
			gemmSerial(false, true, rows, w, hs, scale, q[i0*C3:], C3, k[j0*C3:], C3, 0, s, w)
			for r := range rows {
				row := s[r*w : r*w+w]
				vis := w // keys of the tile row r sees: [lo, vis)
				if causal {
					vis = min(w, i0+r+1-j0)
				}
				lo, first := 0, j0 == 0 // first: the tile holding the row's start
				if st != nil {
					lo = int(st[r]) - j0
					first = lo >= 0 && lo < w
					lo = max(lo, 0)
				}
				if vis <= lo {
					clear(row)
					continue
				}
				m := rowMaxOf(row[lo:vis])
				if !first {
					m = max(m, rowMax[r])
				}
				// exp over whole vectors where the tile allows, then the masked
				// keys back to zero.
				vp := min(w, roundUp(vis, 8))
				expShift(row[lo:vp], m)
				clear(row[:lo])
				clear(row[vis:])
				sum := rowSum(row[:vp])
				if first {
					rowMax[r], rowTotal[r] = m, sum
					continue
				}
				if m != rowMax[r] {
					c := expf(rowMax[r] - m)
					rowTotal[r] *= c
					scaleRow(o[(i0+r)*C:(i0+r)*C+hs], c)
				}
				rowMax[r], rowTotal[r] = m, rowTotal[r]+sum
			}
			beta := float32(1)
			if j0 == jFirst {
				beta = 0
			}
			gemmSerial(false, false, rows, hs, w, 1, s, w, v[j0*C3:], C3, beta, o[i0*C:], C)
		}
		for r := range rows {
			scaleRow(o[(i0+r)*C:(i0+r)*C+hs], 1/rowTotal[r])
			l[i0+r] = rowMax[r] + float32(math.Log(float64(rowTotal[r])))
		}
	}
}

// minInt32 returns the smallest element of x (not empty).
func minInt32(x []int32) int32 {
	m := x[0]
	for _, v := range x[1:] {
		m = min(m, v)
	}
	return m
}

// expShift replaces x by exp(x - shift).
func expShift(x []float32, shift float32) {
	for i := expShiftVec(x, x, shift); i < len(x); i++ {
		x[i] = expf(x[i] - shift)
	}
}

// scaleRow sets x *= c.
func scaleRow(x []float32, c float32) {
	for i := scaleVec(x, c); i < len(x); i++ {
		x[i] *= c
	}
}

// rowMaxOf returns the largest element of x (not empty).
func rowMaxOf(x []float32) float32 {
	m, n := maxVec(x)
	if n == 0 {
		m = x[0]
	}
	for _, v := range x[n:] {
		m = max(m, v)
	}
	return m
}

// rowSum returns sum8(x), in vector registers where it can.
func rowSum(x []float32) float32 {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return sum8(x)
	}
	s := sum8AVX2(&x[0], n)
	for _, v := range x[n:] {
		s += v
	}
	return s
}

// dot8 returns Σ a ⊙ b in sum8's order, each product rounded to float32 before it is
// added, in vector registers where it can.
func dot8(a, b []float32) float32 {
	n := len(a) &^ 7
	var t float32
	switch {
	case n == 0:
	case haveAVX2:
		t = dot8AVX2(&a[0], &b[0], n)
	default:
		var s [8]float32
		for i := 0; i < n; i += 8 {
			x, y := (*[8]float32)(a[i:]), (*[8]float32)(b[i:])
			for j := range s {
				s[j] += float32(x[j] * y[j])
			}
		}
		t = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
	}
	for i := n; i < len(a); i++ {
		t += float32(a[i] * b[i])
	}
	return t
}

// softmaxGrad sets ds = p ⊙ (ds − d)·scale: the gradient of a softmax row's inputs
// from that of its outputs (ds on entry) and probabilities p, d = Σ p ⊙ ds.
func softmaxGrad(ds, p []float32, d, scale float32) {
	for i := softmaxGradVec(ds, p, d, scale); i < len(ds); i++ {
		ds[i] = p[i] * (ds[i] - d) * scale
	}
}

// AttentionBackward implements Backend. Each (batch, head) pair writes only its own
// slices of dqkv, so the pairs run in parallel without changing any summation order.
func (CPU) AttentionBackward(dqkv, dout, qkv, out, lse []float32, B, T, C, H int, causal bool) {
	attentionBackward(dqkv, dout, qkv, out, lse, nil, B, T, C, H, causal)
}

// AttentionBackwardRanges implements Backend.
func (CPU) AttentionBackwardRanges(dqkv, dout, qkv, out, lse []float32, start []int32, B, T, C, H int) {
	attentionBackward(dqkv, dout, qkv, out, lse, start, B, T, C, H, true)
}

func attentionBackward(dqkv, dout, qkv, out, lse []float32, start []int32, B, T, C, H int, causal bool) {
	k := attnPool.get()
	k.dqkv, k.dout, k.qkv, k.out, k.lse, k.start, k.T, k.C, k.H, k.causal = dqkv, dout, qkv, out, lse, start, T, C, H, causal
	parallelRange(B*H, 1, (*attnBwd)(k))
	k.start = nil
	attnPool.put(k)
}

func (k *attnBwd) do(lo, hi int) {
	// Tiles of probabilities and of their gradients, then each tile row's D.
	buf := getScratch(2*attnBlock*attnKeyBlock + attnBlock)
	for bh := lo; bh < hi; bh++ {
		attentionBackwardHead(k.dqkv, k.dout, k.qkv, k.out, k.lse, k.start, buf, bh/k.H, bh%k.H, k.T, k.C, k.H, k.causal)
	}
	putScratch(buf)
}

// attentionBackwardHead adds head h of batch row b's gradients into dqkv; buf is scratch
// of attnBlock·(2·attnKeyBlock+1) floats. Tile by tile, with P = exp(scale·Q·Kᵀ − lse),
// dP = dO·Vᵀ and dS = P ⊙ (dP − D)·scale where D = rowsum(dO ⊙ O):
// dV += Pᵀ·dO, dQ += dS·K, dK += dSᵀ·Q. start is as in attentionForwardHead: the keys
// before a row's start get P = 0, and key tiles before the query tile's smallest start
// are skipped.
func attentionBackwardHead(dqkv, dout, qkv, out, lse []float32, start []int32, buf []float32, b, h, T, C, H int, causal bool) {
	hs, C3 := C/H, 3*C
	scale := float32(1 / math.Sqrt(float64(hs)))
	base := b*T*C3 + h*hs
	q, k, v := qkv[base:], qkv[base+C:], qkv[base+2*C:] // (T,hs), row stride 3C
	dq, dk, dv := dqkv[base:], dqkv[base+C:], dqkv[base+2*C:]
	o, do := out[b*T*C+h*hs:], dout[b*T*C+h*hs:] // (T,hs), row stride C
	l := lse[(b*H+h)*T : (b*H+h+1)*T]            // (T)
	p := buf[:attnBlock*attnKeyBlock]            // (rows,w) probabilities
	ds := buf[attnBlock*attnKeyBlock : 2*attnBlock*attnKeyBlock]
	d := buf[2*attnBlock*attnKeyBlock : 2*attnBlock*attnKeyBlock+attnBlock] // (rows)
	for i0 := 0; i0 < T; i0 += attnBlock {
		i1 := min(i0+attnBlock, T)
		rows := i1 - i0
		keys := T
		if causal {
			keys = i1
		}
		for r := range rows {
			t := i0 + r
			d[r] = dot8(do[t*C:t*C+hs], o[t*C:t*C+hs])
		}
		var st []int32 // (rows) the tile rows' starts; nil: every row starts at 0
		jFirst := 0
		if start != nil {
			st = start[b*T+i0 : b*T+i1]
			jFirst = int(minInt32(st)) / attnKeyBlock * attnKeyBlock
		}
		for j0 := jFirst; j0 < keys; j0 += attnKeyBlock {
			w := min(attnKeyBlock, keys-j0)
			gemmSerial(false, true, rows, w, hs, scale, q[i0*C3:], C3, k[j0*C3:], C3, 0, p, w)
			for r := range rows {
				row := p[r*w : r*w+w]
				vis := w
				if causal {
					vis = max(0, min(w, i0+r+1-j0))
				}
				if st == nil {
					expShift(row[:min(w, roundUp(vis, 8))], l[i0+r])
					clear(row[vis:])
					continue
				}
				lo := min(max(int(st[r])-j0, 0), vis)
				expShift(row[lo:min(w, roundUp(vis, 8))], l[i0+r])
				clear(row[:lo])
				clear(row[vis:])
			}
			gemmSerial(true, false, w, hs, rows, 1, p, w, do[i0*C:], C, 1, dv[j0*C3:], C3)
			gemmSerial(false, true, rows, w, hs, 1, do[i0*C:], C, v[j0*C3:], C3, 0, ds, w)
			for r := range rows {
				softmaxGrad(ds[r*w:r*w+w], p[r*w:r*w+w], d[r], scale)
			}
			gemmSerial(false, false, rows, hs, w, 1, ds, w, k[j0*C3:], C3, 1, dq[i0*C3:], C3)
			gemmSerial(true, false, w, hs, rows, 1, ds, w, q[i0*C3:], C3, 1, dk[j0*C3:], C3)
		}
	}
}

// NaiveAttentionForward is the reference for CPU.AttentionForward: one query row at a
// time, the whole row of scores at once, dot products in order. It writes out (B,T,C)
// and lse (B,H,T).
func NaiveAttentionForward(out, lse, qkv []float32, B, T, C, H int, causal bool) {
	naiveAttentionForward(out, lse, qkv, nil, B, T, C, H, causal)
}

// NaiveAttentionForwardRanges is the reference for CPU.AttentionForwardRanges: causal
// attention where query t of row b sees the keys [start[b·T+t], t] (start nil: from 0).
func NaiveAttentionForwardRanges(out, lse, qkv []float32, start []int32, B, T, C, H int) {
	naiveAttentionForward(out, lse, qkv, start, B, T, C, H, true)
}

func naiveAttentionForward(out, lse, qkv []float32, start []int32, B, T, C, H int, causal bool) {
	hs := C / H
	C3 := 3 * C
	row := make([]float32, T) // (T) probabilities of one query row
	for bh := 0; bh < B*H; bh++ {
		b, h := bh/H, bh%H
		for t := 0; t < T; t++ {
			first, last := naiveRange(start, b, t, T, causal)
			lse[bh*T+t] = naiveSoftmaxRow(row[:last-first], qkv, b, h, t, first, T, C, H)
			o := out[(b*T+t)*C+h*hs : (b*T+t)*C+h*hs+hs]
			clear(o)
			for t2 := first; t2 < last; t2++ {
				v := qkv[(b*T+t2)*C3+2*C+h*hs : (b*T+t2)*C3+2*C+h*hs+hs]
				a := row[t2-first]
				for i, vv := range v {
					o[i] += a * vv
				}
			}
		}
	}
}

// naiveRange returns the keys [first, last) query t of batch row b sees.
func naiveRange(start []int32, b, t, T int, causal bool) (first, last int) {
	last = T
	if causal {
		last = t + 1
	}
	if start != nil {
		first = int(start[b*T+t])
	}
	return first, last
}

// naiveSoftmaxRow sets row (the len(row) visible keys from key first) to the softmax of
// the scaled scores of query t in head h of batch row b, and returns their log-sum-exp.
func naiveSoftmaxRow(row, qkv []float32, b, h, t, first, T, C, H int) float32 {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	C3 := 3 * C
	q := qkv[(b*T+t)*C3+h*hs : (b*T+t)*C3+h*hs+hs]
	maxv := float32(math.Inf(-1))
	for i2 := range row {
		t2 := first + i2
		k := qkv[(b*T+t2)*C3+C+h*hs : (b*T+t2)*C3+C+h*hs+hs]
		var s float32
		for i, qv := range q {
			s += qv * k[i]
		}
		s *= scale
		row[i2] = s
		maxv = max(maxv, s)
	}
	var sum float32
	for t2, s := range row {
		e := float32(math.Exp(float64(s - maxv)))
		row[t2] = e
		sum += e
	}
	inv := 1 / sum
	for t2 := range row {
		row[t2] *= inv
	}
	return maxv + float32(math.Log(float64(sum)))
}

// NaiveAttentionBackward is the reference for CPU.AttentionBackward: it adds into dqkv
// (B,T,3C) given dout (B,T,C), recomputing each row of probabilities from qkv as
// NaiveAttentionForward does (it needs neither out nor the log-sum-exp).
func NaiveAttentionBackward(dqkv, dout, qkv []float32, B, T, C, H int, causal bool) {
	naiveAttentionBackward(dqkv, dout, qkv, nil, B, T, C, H, causal)
}

// NaiveAttentionBackwardRanges is the reference for CPU.AttentionBackwardRanges, with
// start as in NaiveAttentionForwardRanges.
func NaiveAttentionBackwardRanges(dqkv, dout, qkv []float32, start []int32, B, T, C, H int) {
	naiveAttentionBackward(dqkv, dout, qkv, start, B, T, C, H, true)
}

func naiveAttentionBackward(dqkv, dout, qkv []float32, start []int32, B, T, C, H int, causal bool) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	C3 := 3 * C
	row, datt := make([]float32, T), make([]float32, T) // (T) scratch for one query row
	for bh := 0; bh < B*H; bh++ {
		b, h := bh/H, bh%H
		for t := 0; t < T; t++ {
			first, last := naiveRange(start, b, t, T, causal)
			row, datt := row[:last-first], datt[:last-first]
			naiveSoftmaxRow(row, qkv, b, h, t, first, T, C, H)
			do := dout[(b*T+t)*C+h*hs : (b*T+t)*C+h*hs+hs]
			// out = sum_t2 att[t2] v[t2]: gradients into datt and dv (indexed from first).
			for t2 := first; t2 < last; t2++ {
				off := (b*T+t2)*C3 + 2*C + h*hs
				v := qkv[off : off+hs]
				dv := dqkv[off : off+hs]
				var s float32
				a := row[t2-first]
				for i, g := range do {
					s += v[i] * g
					dv[i] += a * g
				}
				datt[t2-first] = s
			}
			// softmax backward: dpre[t2] = att[t2] * (datt[t2] - sum_j att[j] datt[j]).
			var dot float32
			for i2 := range row {
				dot += row[i2] * datt[i2]
			}
			qoff := (b*T+t)*C3 + h*hs
			q := qkv[qoff : qoff+hs]
			dq := dqkv[qoff : qoff+hs]
			for t2 := first; t2 < last; t2++ {
				dpre := row[t2-first] * (datt[t2-first] - dot) * scale
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
