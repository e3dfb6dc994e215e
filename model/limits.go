package model

import (
	"fmt"
	"math/bits"
)

// Limits bound the size of a model: the floats of its parameter slab and the bytes of
// its training activations for one micro-batch. Every size is computed with
// overflow-checked arithmetic, so a config whose sizes do not fit in 64 bits is
// refused rather than wrapped.
//
// Config.Validate holds every config to HardLimits, which keep every length the
// model allocates a valid Go slice length on a 64-bit machine. Callers that admit
// work from others (the coordinator's job check, the readers of checkpoint and
// Hugging Face files) hold configs to tighter limits with CheckLimits: the
// coordinator's --max-params and --max-activation-bytes, DefaultLimits otherwise.
type Limits struct {
	// MaxParams is the most float32 parameters (the tied LM head counted once). The
	// trainer keeps four slabs of this size (weights, gradients, two AdamW moments).
	MaxParams int64
	// MaxActivationBytes is the most bytes of activations one Forward of a
	// micro-batch (B sequences of T tokens) keeps for Backward.
	MaxActivationBytes int64
}

// Hard and default limits. MaxLayers bounds the per-layer bookkeeping (the tensor
// list), independently of the slab size.
const (
	MaxLayers = 4096
)

// HardLimits are the limits every config is held to (Config.Validate): 2^34 floats
// (64 GiB) of parameters and 2^40 bytes of activations. Past them no machine
// ringtrain runs on could hold the model; within them no length overflows.
var HardLimits = Limits{MaxParams: 1 << 34, MaxActivationBytes: 1 << 40}

// DefaultLimits are the limits of the coordinator's job check unless configured
// otherwise (--max-params, --max-activation-bytes): 2^31 parameters (8 GiB per slab,
// about 2.1 billion: GPT-2 XL's 1.56 billion fits) and 64 GiB of activations per
// micro-batch.
var DefaultLimits = Limits{MaxParams: 1 << 31, MaxActivationBytes: 64 << 30}

// checked does overflow-checked arithmetic on non-negative int64 values: once an
// operation overflows, every later result is ok=false.
type checked struct {
	v        uint64
	overflow bool
}

func num(n int) checked {
	if n < 0 {
		return checked{overflow: true}
	}
	return checked{v: uint64(n)}
}

func (a checked) mul(b checked) checked {
	hi, lo := bits.Mul64(a.v, b.v)
	return checked{v: lo, overflow: a.overflow || b.overflow || hi != 0 || lo > 1<<62}
}

func (a checked) add(b checked) checked {
	s, carry := bits.Add64(a.v, b.v, 0)
	return checked{v: s, overflow: a.overflow || b.overflow || carry != 0 || s > 1<<62}
}

func (a checked) int64() (int64, bool) { return int64(a.v), !a.overflow }

// ParamCount returns the number of float32 parameters of c (the tied LM head once),
// computed without overflow; ok is false when the count does not fit in 2^62.
// Negative dimensions are not ok.
func (c Config) ParamCount() (n int64, ok bool) {
	L, C, V, T := num(c.Layers), num(c.Embd), num(c.VocabSize), num(c.MaxSeqLen)
	// per layer: ln_1 2C, c_attn 3C*C + 3C, c_proj C*C + C, ln_2 2C, c_fc 4C*C + 4C,
	// c_proj 4C*C + C: 12C^2 + 13C
	perLayer := num(12).mul(C).mul(C).add(num(13).mul(C))
	total := V.mul(C).add(T.mul(C)).add(L.mul(perLayer)).add(num(2).mul(C))
	return total.int64()
}

// ActivationBytes returns the bytes of the buffers one Forward of B sequences of T
// tokens allocates for Backward (what newActivations allocates for a trainable
// model), computed without overflow; ok is false when the count does not fit in 2^62.
func (c Config) ActivationBytes(B, T int) (n int64, ok bool) {
	L, C, H, V := num(c.Layers), num(c.Embd), num(c.Heads), num(c.VocabSize)
	N := num(B).mul(num(T))
	// per layer: ln1, atty, res2, ln2, res3 (5C), qkv 3C, fch and its GELU 8C: 16C
	// floats per token, plus the LayerNorm means and rstds (4) and the attention's
	// log-sum-exp per head (H).
	perLayer := N.mul(num(16).mul(C).add(num(4)).add(H))
	// encoded, lnf, proj and the backward scratch (dres, dbuf, dfch, dfchG, dqkv: 13C):
	// 16C per token; lnf mean and rstd, losses, and the inputs, targets and example
	// starts (int32): 6; logits V.
	rest := N.mul(num(16).mul(C).add(num(6)).add(V))
	return L.mul(perLayer).add(rest).mul(num(4)).int64()
}

// FrozenActivationBytes returns the bytes of the buffers one forward of B sequences
// of T tokens allocates on a frozen model (NewFrozen), which keeps nothing for
// backward: one block's buffers that every layer reuses, whatever the number of
// layers, and no backward scratch. logits says whether the forward needs the
// logits (Forward, ForwardPolicy) or not (ForwardReward). ok is as in
// ActivationBytes.
func (c Config) FrozenActivationBytes(B, T int, logits bool) (n int64, ok bool) {
	C, H, V := num(c.Embd), num(c.Heads), num(c.VocabSize)
	N := num(B).mul(num(T))
	// one block: ln (ln_1 and ln_2), atty, res2, proj (4C), qkv 3C, fch and its GELU
	// 8C: 15C floats per token, the LayerNorm mean and rstd (2) and the attention's
	// log-sum-exp per head (H); encoded (every block's input and output) and lnf:
	// 2C; lnf mean and rstd, losses, and the inputs, targets and example starts: 6.
	per := num(17).mul(C).add(H).add(num(8))
	if logits {
		per = per.add(V)
	}
	return N.mul(per).mul(num(4)).int64()
}

// CheckLimits checks that c fits lim, and that its activations for micro-batches of
// B sequences of T tokens do (B or T < 1 skips the activation check). Errors wrap
// ErrBadConfig and name the sizes and the limit.
func (c Config) CheckLimits(lim Limits, B, T int) error {
	if c.Layers > MaxLayers {
		return fmt.Errorf("%w: layers=%d exceeds %d", ErrBadConfig, c.Layers, MaxLayers)
	}
	n, ok := c.ParamCount()
	switch {
	case !ok:
		return fmt.Errorf("%w: layers=%d heads=%d embd=%d max_seq_len=%d vocab_size=%d: the parameter count overflows",
			ErrBadConfig, c.Layers, c.Heads, c.Embd, c.MaxSeqLen, c.VocabSize)
	case lim.MaxParams > 0 && n > lim.MaxParams:
		return fmt.Errorf("%w: layers=%d embd=%d max_seq_len=%d vocab_size=%d: %d parameters exceed the limit of %d",
			ErrBadConfig, c.Layers, c.Embd, c.MaxSeqLen, c.VocabSize, n, lim.MaxParams)
	}
	if B < 1 || T < 1 {
		return nil
	}
	a, ok := c.ActivationBytes(B, T)
	switch {
	case !ok:
		return fmt.Errorf("%w: activations of %d sequences of %d tokens overflow (layers=%d embd=%d vocab_size=%d)",
			ErrBadConfig, B, T, c.Layers, c.Embd, c.VocabSize)
	case lim.MaxActivationBytes > 0 && a > lim.MaxActivationBytes:
		return fmt.Errorf("%w: activations of %d sequences of %d tokens take %d bytes, over the limit of %d (layers=%d embd=%d vocab_size=%d)",
			ErrBadConfig, B, T, a, lim.MaxActivationBytes, c.Layers, c.Embd, c.VocabSize)
	}
	return nil
}
