package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// packedCase is a few examples of random tokens and masks, packed into rows of T
// positions (first fit in order), and the same examples each alone in a padded row.
type packedCase struct {
	T                  int
	packedIn, packedTg []int32 // (rows,T)
	start              []int32 // (rows,T)
	rows               int
	aloneIn, aloneTg   []int32 // (len(lens),T)
}

// newPackedCase builds the case for examples of the given lengths (each <= T): an
// example's targets are its next tokens where a random mask trains them, -1 elsewhere;
// the last position of each example has no target (the next token is another
// example's or padding), and padding positions are their own untrained example.
func newPackedCase(r *rand.Rand, T, vocab int, lens []int) packedCase {
	c := packedCase{T: T}
	pad := int32(vocab - 1)
	type ex struct{ in, tg []int32 }
	exs := make([]ex, len(lens))
	for i, n := range lens {
		e := ex{in: make([]int32, n), tg: make([]int32, n)}
		for j := range n {
			e.in[j] = int32(r.IntN(vocab))
		}
		for j := range n {
			e.tg[j] = -1
			if j+1 < n && r.IntN(3) > 0 {
				e.tg[j] = e.in[j+1]
			}
		}
		exs[i] = e
	}
	row := func(in, tg, start *[]int32) {
		for range T {
			*in, *tg, *start = append(*in, pad), append(*tg, -1), append(*start, 0)
		}
	}
	var unused []int32
	used := T // positions used in the current packed row
	for _, e := range exs {
		if used+len(e.in) > T {
			row(&c.packedIn, &c.packedTg, &c.start)
			c.rows++
			used = 0
		}
		base := (c.rows-1)*T + used
		copy(c.packedIn[base:], e.in)
		copy(c.packedTg[base:], e.tg)
		for j := range e.in {
			c.start[base+j] = int32(used)
		}
		used += len(e.in)
		// Padding after the example, until another one lands there, is its own example.
		for t := used; t < T; t++ {
			c.start[(c.rows-1)*T+t] = int32(used)
		}
		row(&c.aloneIn, &c.aloneTg, &unused)
		a := len(c.aloneIn) - T
		copy(c.aloneIn[a:], e.in)
		copy(c.aloneTg[a:], e.tg)
	}
	return c
}

// TestPackedEqualsSeparateRows is the packing contract: examples packed into rows
// (positions restarting, attention blocked between them) give the loss and every
// gradient of the same examples each alone in a padded row, up to float rounding.
func TestPackedEqualsSeparateRows(t *testing.T) {
	cfg := Config{VocabSize: 61, MaxSeqLen: 48, Layers: 2, Heads: 2, Embd: 16}
	r := rand.New(rand.NewPCG(7, 8))
	for _, lens := range [][]int{{5, 9, 3}, {48}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {20, 20, 20, 7, 30, 2}} {
		c := newPackedCase(r, 48, cfg.VocabSize, lens)
		run := func(packed bool) (float64, int, []float32) {
			m, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			m.InitWeights(3)
			var sum float64
			var n int
			if packed {
				sum, n, err = m.ForwardPacked(c.packedIn, c.packedTg, c.start, c.rows, c.T)
			} else {
				sum, n, err = m.Forward(c.aloneIn, c.aloneTg, len(lens), c.T, true)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				if err := m.Backward(float32(1/float64(n)), nil); err != nil {
					t.Fatal(err)
				}
			}
			return sum, n, m.Grads.Slab
		}
		ps, pn, pg := run(true)
		as, an, ag := run(false)
		if pn != an {
			t.Fatalf("examples %v: %d trained targets packed, %d alone", lens, pn, an)
		}
		if math.Abs(ps-as) > 1e-5*math.Abs(as) {
			t.Errorf("examples %v: loss sum %.9g packed, %.9g alone", lens, ps, as)
		}
		for _, ten := range cfg.Tensors() {
			compare(t, "grad."+ten.Name, pg[ten.Offset:ten.Offset+ten.Size], ag[ten.Offset:ten.Offset+ten.Size], 1e-7, 1e-4)
		}
		t.Logf("examples %v: %d rows packed, %d alone; loss sum %.9g vs %.9g", lens, c.rows, len(lens), ps, as)
	}
}

// TestForwardPackedNilIsForward checks that ForwardPacked without starts is the
// causal Forward, bit for bit, losses and gradients.
func TestForwardPackedNilIsForward(t *testing.T) {
	cfg := Config{VocabSize: 61, MaxSeqLen: 32, Layers: 2, Heads: 2, Embd: 16}
	r := rand.New(rand.NewPCG(9, 10))
	B, T := 3, 32
	in, tg := make([]int32, B*T), make([]int32, B*T)
	for i := range in {
		in[i], tg[i] = int32(r.IntN(cfg.VocabSize)), int32(r.IntN(cfg.VocabSize))
	}
	var grads [2][]float32
	var sums [2]float64
	for i := range 2 {
		m, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.InitWeights(5)
		if i == 0 {
			sums[i], _, err = m.Forward(in, tg, B, T, true)
		} else {
			sums[i], _, err = m.ForwardPacked(in, tg, nil, B, T)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(0.01, nil); err != nil {
			t.Fatal(err)
		}
		grads[i] = m.Grads.Slab
	}
	if sums[0] != sums[1] {
		t.Errorf("loss sum %v by Forward, %v by ForwardPacked(nil)", sums[0], sums[1])
	}
	for i := range grads[0] {
		if math.Float32bits(grads[0][i]) != math.Float32bits(grads[1][i]) {
			t.Fatalf("gradient %d: %g by Forward, %g by ForwardPacked(nil)", i, grads[0][i], grads[1][i])
		}
	}
}

// TestForwardPackedBadStarts checks that a start that does not cut rows into
// consecutive examples is an ErrShape error naming the position.
func TestForwardPackedBadStarts(t *testing.T) {
	cfg := Config{VocabSize: 11, MaxSeqLen: 4, Layers: 1, Heads: 1, Embd: 4}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := []int32{1, 2, 3, 4}
	for _, start := range [][]int32{{1, 1, 2, 2}, {0, 0, 1, 1}, {0, 1, 0, 3}, {0, 0, 0}, {0, 0, 2, 5}} {
		if _, _, err := m.ForwardPacked(in, in, start, 1, 4); !errors.Is(err, ErrShape) {
			t.Errorf("start %v: err = %v, want ErrShape", start, err)
		}
	}
	if _, _, err := m.ForwardPacked(in, in, []int32{0, 0, 2, 2}, 1, 4); err != nil {
		t.Errorf("a valid start: %v", err)
	}
}
