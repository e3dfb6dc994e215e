package trainer

import "math/rand/v2"

// maskRNG returns the generator of the masked-LM corruption for one (stream, step, row)
// of a domain (training or evaluation). It depends only on the job seed and these
// indices, never on the token values, so any rank can count the masked positions of the
// whole global batch without reading its data.
func maskRNG(seed uint64, domain uint64, stream int, step int64, row int) *rand.Rand {
	h := mix64(seed ^ 0x6d61736b6c6d0001)
	for _, v := range [...]uint64{domain, uint64(stream), uint64(step), uint64(row)} {
		h = mix64(h ^ v)
	}
	return rand.New(rand.NewPCG(h, seed))
}

// Domains of maskRNG.
const (
	maskTrain uint64 = 1
	maskEval  uint64 = 2
)

// mix64 is splitmix64's finaliser: a bijective scramble of 64 bits.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// MaskRow applies BERT-style corruption to one row of T tokens in place: each position
// is chosen with probability rate; a chosen position's target is its original token and
// its input becomes the mask token (80%), a random token (10%) or stays (10%). Targets of
// unchosen positions are -1. It returns the number of chosen positions.
func MaskRow(tokens, targets []int32, rate float64, maskID int32, vocab int, rng *rand.Rand) int {
	n := 0
	for i := range tokens {
		// Draw the same number of values per position whatever the outcome, so that the
		// choice of positions never depends on the tokens.
		u, kind, repl := rng.Float64(), rng.Float64(), int32(rng.IntN(vocab))
		if u >= rate {
			targets[i] = -1
			continue
		}
		n++
		targets[i] = tokens[i]
		switch {
		case kind < 0.8:
			tokens[i] = maskID
		case kind < 0.9:
			tokens[i] = repl
		}
	}
	return n
}

// countMasked returns how many positions MaskRow chooses for one row without touching data.
func countMasked(T int, rate float64, vocab int, rng *rand.Rand) int {
	n := 0
	for range T {
		u := rng.Float64()
		rng.Float64()
		rng.IntN(vocab)
		if u < rate {
			n++
		}
	}
	return n
}
