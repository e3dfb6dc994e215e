// Package model is GPT-2 as ringtrain trains it: the parameters in one slab with
// typed views, the forward and backward passes written against tensor.Backend,
// AdamW and global-norm clipping, checkpoints, Hugging Face files, and generation.
//
// # Who calls it
//
// trainer builds a GPT per run (or per worker) and drives Forward, Backward,
// ClipGradNorm and AdamW.Update; it writes and restores checkpoints with
// SaveCheckpoint and LoadCheckpoint. The worker commits CheckpointDigest through the
// coordinator. cmd/ringtrain's generate, eval and export commands use Decoder,
// Generate, ExportHF and ImportHF; package serve (generate --prompts, chat, serve)
// decodes many sequences at once with BatchDecoder.
//
// # Usage
//
//	cfg := model.Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 64, VocabSize: 67}
//	m, err := model.New(cfg, nil) // nil: the CPU backend
//	if err != nil { ... }
//	m.InitWeights(1337)
//	opt := model.NewAdamW(cfg)
//	m.ZeroGrad()
//	lossSum, n, err := m.Forward(inputs, targets, B, T, true) // causal LM; inputs, targets (B,T)
//	err = m.Backward(float32(1/float64(n)), nil)             // adds into m.Grads.Slab
//	model.ClipGradNorm(m.Grads.Slab, 1.0)
//	err = opt.Update(cfg, model.DefaultAdamW(), lr, m.Params.Slab, m.Grads.Slab)
//
// # Layout
//
// Params.Slab is wte, wpe, each layer's twelve tensors contiguously (layer 0 first),
// then the final LayerNorm; Grads.Slab has the same layout. A layer's gradients are
// one contiguous range, which is what lets Backward report ranges as soon as they are
// final (the worker all-reduces them while backward works on the layers below).
// Linear weights are stored (out, in), like torch.nn.Linear; Hugging Face's Conv1D
// stores (in, out), so ExportHF and ImportHF transpose them. The LM head is tied to
// wte.
//
// A transformer block is written once per direction (block.go: blockForward and
// blockBackward over one layer's activation views, blockActs); training runs them
// over every layer's views, generation runs blockForward over the decoder's scratch
// with attention over a key/value cache. ForwardPacked trains rows that pack several
// examples (a packed SFT dataset): each example is embedded from position 0 and
// attention runs over per-position causal ranges (Backend.AttentionForwardRanges), so
// an example trains as it would alone in a row. Every op goes through the Backend, so
// another backend runs the same model code.
//
// # Determinism
//
// Forward, Backward, clipping and AdamW give the same bits for the same inputs
// whatever the thread count (the kernels' reductions have a fixed order), and a
// warmed-up training step allocates nothing. Weights are initialised with
// Box-Muller over math/rand/v2's PCG, implemented here, so a seed gives the same
// weights with every Go version.
package model
