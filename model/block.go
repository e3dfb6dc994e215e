package model

import "github.com/ringtrain/ringtrain/tensor"

// A transformer block, as GPT-2 writes it (pre-LayerNorm):
//
//	res2 = x + attproj(attention(qkv(ln1(x))))
//	res3 = res2 + fcproj(gelu(fc(ln2(res2))))
//
// blockForward and blockBackward are that sequence of backend ops, each direction
// written once. Training (GPT.Forward and GPT.Backward) runs them over every layer's
// blockActs, views into the model's activation slabs; generation (Decoder) runs
// blockForward over the decoder's scratch, with attention over a key/value cache.

// blockActs are the activation buffers of one transformer block over N = B·T
// positions: the block's input is the residual stream x (N,C) of the block before it
// (or the embeddings), and everything the block computes lands here. In training each
// layer has its own views, kept for backward; in generation one set of views serves
// every layer and may alias buffers the block no longer needs when it writes them (see
// Decoder.views).
type blockActs struct {
	ln1     []float32 // (N,C) ln_1(x)
	ln1Mean []float32 // (N)
	ln1Rstd []float32 // (N)
	qkv     []float32 // (N,3C) queries, keys and values
	atty    []float32 // (N,C) attention output, before its projection
	lse     []float32 // (B,H,T) attention log-sum-exp per query row; nil in generation
	proj    []float32 // (N,C) scratch for both projections' outputs; shared by all layers
	res2    []float32 // (N,C) residual stream after attention
	ln2     []float32 // (N,C) ln_2(res2)
	ln2Mean []float32 // (N)
	ln2Rstd []float32 // (N)
	fch     []float32 // (N,4C) fc(ln2)
	fchGelu []float32 // (N,4C) gelu(fch)
	res3    []float32 // (N,C) residual stream after the MLP: the block's output
}

// blockGrads is backward's scratch, shared by every layer and by the head before them.
type blockGrads struct {
	dres  []float32 // (N,C) gradient of the residual stream: d res3 in, d x out
	dbuf  []float32 // (N,C)
	dfch  []float32 // (N,4C)
	dfchG []float32 // (N,4C)
	dqkv  []float32 // (N,3C)
}

// kvCache is one layer's key/value cache of one sequence in generation: rows 0..pos0-1
// of k and v (maxT,C) hold the keys and values of the positions before the sequence's T
// rows in the block, which are positions pos0..pos0+T-1 of that sequence.
type kvCache struct {
	k, v []float32 // (maxT,C)
	pos0 int
}

// blockForward runs block w on x (N,C), N = B·T, writing every activation into a and
// the block's output into a.res3. With kv nil, attention is AttentionForward over B
// sequences of T positions (causal or not) and saves a.lse for backward; with kv set
// (generation, len(kv) = B), sequence b's attention is AttentionDecodeForward over
// kv[b], which also appends its keys and values to kv[b]. The sequences of a batch may
// be at different positions; every op but attention treats the N rows alike, so a
// sequence's rows get the same bits whatever else is in the batch. a.res3 may alias x.
// start (B,T), set only for packed rows (causal, kv nil), is each position's first key:
// attention is AttentionForwardRanges, blocked between the examples of a row.
func blockForward(be tensor.Backend, w *Block, a *blockActs, x []float32, B, T, C, H int, causal bool, kv []kvCache, start []int32) {
	N := B * T
	be.LayerNormForward(a.ln1, a.ln1Mean, a.ln1Rstd, x, w.Ln1W, w.Ln1B, N, C)
	be.MatmulForward(a.qkv, a.ln1, w.QKVW, w.QKVB, N, C, 3*C)
	switch {
	case start != nil:
		be.AttentionForwardRanges(a.atty, a.lse, a.qkv, start, B, T, C, H)
	case kv == nil:
		be.AttentionForward(a.atty, a.lse, a.qkv, B, T, C, H, causal)
	default:
		for b := range B {
			be.AttentionDecodeForward(a.atty[b*T*C:(b+1)*T*C], kv[b].k, kv[b].v, a.qkv[b*T*3*C:(b+1)*T*3*C], T, kv[b].pos0, C, H)
		}
	}
	be.MatmulForward(a.proj, a.atty, w.AttnProjW, w.AttnProjB, N, C, C)
	be.ResidualForward(a.res2, x, a.proj)
	be.LayerNormForward(a.ln2, a.ln2Mean, a.ln2Rstd, a.res2, w.Ln2W, w.Ln2B, N, C)
	be.MatmulForward(a.fch, a.ln2, w.FcW, w.FcB, N, C, 4*C)
	be.GeluForward(a.fchGelu, a.fch)
	be.MatmulForward(a.proj, a.fchGelu, w.FcProjW, w.FcProjB, N, 4*C, C)
	be.ResidualForward(a.res3, a.res2, a.proj)
}

// blockBackward adds into dw the gradients of block w given d.dres = d res3 (N,C), and
// replaces d.dres with d x. x and a are the input and activations of the blockForward
// (without kv) it differentiates, with the same start; d's other buffers are scratch.
func blockBackward(be tensor.Backend, w, dw *Block, a *blockActs, x []float32, d *blockGrads, B, T, C, H int, causal bool, start []int32) {
	N := B * T
	// res3 = res2 + fcproj(gelu(fc(ln2(res2)))): dres holds d res3.
	be.Zero(d.dfchG)
	be.MatmulBackward(d.dfchG, dw.FcProjW, dw.FcProjB, d.dres, a.fchGelu, w.FcProjW, N, 4*C, C)
	be.Zero(d.dfch)
	be.GeluBackward(d.dfch, a.fch, d.dfchG)
	be.Zero(d.dbuf)
	be.MatmulBackward(d.dbuf, dw.FcW, dw.FcB, d.dfch, a.ln2, w.FcW, N, C, 4*C)
	be.LayerNormBackward(d.dres, dw.Ln2W, dw.Ln2B, d.dbuf, a.res2, w.Ln2W, a.ln2Mean, a.ln2Rstd, N, C)
	// res2 = x + attproj(attn(qkv(ln1(x)))): dres now holds d res2.
	be.Zero(d.dbuf)
	be.MatmulBackward(d.dbuf, dw.AttnProjW, dw.AttnProjB, d.dres, a.atty, w.AttnProjW, N, C, C)
	be.Zero(d.dqkv)
	if start != nil {
		be.AttentionBackwardRanges(d.dqkv, d.dbuf, a.qkv, a.atty, a.lse, start, B, T, C, H)
	} else {
		be.AttentionBackward(d.dqkv, d.dbuf, a.qkv, a.atty, a.lse, B, T, C, H, causal)
	}
	be.Zero(d.dbuf)
	be.MatmulBackward(d.dbuf, dw.QKVW, dw.QKVB, d.dqkv, a.ln1, w.QKVW, N, C, 3*C)
	be.LayerNormBackward(d.dres, dw.Ln1W, dw.Ln1B, d.dbuf, x, w.Ln1W, a.ln1Mean, a.ln1Rstd, N, C)
}
