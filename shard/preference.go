package shard

import "fmt"

// A preference dataset (SFTInfo.Format == FormatPreference) stores each pair as two
// adjacent rows of T+1 tokens, chosen then rejected. A job draws pairs, never single
// rows, so both answers of a pair are always in the same micro-batch of the same
// stream, on the same rank: the pair sampler treats the 2(T+1) tokens of a pair as
// one example of "sequence length" 2T+1, and the loader fills a (b, 2T+1) batch of
// them unchanged; SplitPairs then cuts each pair window back into its two rows.

// PairSeqLen is the sequence length of a pair window for rows of seq_len T: 2T+1
// (a pair is 2(T+1) tokens, one more than its inputs).
func PairSeqLen(T int) int { return 2*T + 1 }

// NewPairSampler is NewExampleSampler for a preference dataset of rows of seq_len T:
// every window is one whole pair (b pairs a micro-batch), read as one example of
// PairSeqLen(T). An epoch visits every pair once.
func NewPairSampler(shardTokens []int64, seed uint64, M, b, T int) (*Sampler, error) {
	if T < 1 {
		return nil, fmt.Errorf("%w: seq_len=%d must be >= 1", ErrBadOptions, T)
	}
	return NewExampleSampler(shardTokens, seed, M, b, PairSeqLen(T))
}

// SplitPairs cuts a batch of b pair windows (inputs and targets (b, 2T+1), as the
// loader fills them under a pair sampler) into the 2b rows of the pairs, (2b, T) each:
// row 2p is pair p's chosen answer and row 2p+1 its rejected one. The window's
// position T (the chosen row's last token as an input, the rejected row's first as a
// target) belongs to neither row and is dropped. rowInputs and rowTargets are
// caller-owned.
func SplitPairs(inputs, targets []int32, b, T int, rowInputs, rowTargets []int32) error {
	W := PairSeqLen(T)
	if len(inputs) != b*W || len(targets) != b*W || len(rowInputs) != 2*b*T || len(rowTargets) != 2*b*T {
		return fmt.Errorf("%w: SplitPairs of %d pairs of seq_len %d: %d inputs and %d targets (want %d), %d and %d row slots (want %d)",
			ErrBadOptions, b, T, len(inputs), len(targets), b*W, len(rowInputs), len(rowTargets), 2*b*T)
	}
	for p := range b {
		win, tgt := inputs[p*W:(p+1)*W], targets[p*W:(p+1)*W]
		c, r := 2*p*T, (2*p+1)*T
		copy(rowInputs[c:c+T], win[:T])
		copy(rowTargets[c:c+T], tgt[:T])
		copy(rowInputs[r:r+T], win[T+1:])
		copy(rowTargets[r:r+T], tgt[T+1:])
	}
	return nil
}
