package shard

// packRows packs examples (each a padded row of L tokens whose first n are its own)
// into rows of L tokens that hold several whole examples, by first fit in example
// order: each example goes into the first row that still has room for all its tokens,
// or else opens a new row. Examples are never split, and keep their order within a
// row, so the result is a pure function of the examples and L. A row's tokens after
// its last example are padding, the end-of-text id eot, untrained; each returned row's
// start gives every token the offset of its example's first token, the padding
// counting as one more example. An example's mask is kept: its first token is never
// trained (encode trains only tokens after the first).
//
// The search visits only rows with room for the shortest example, so its cost is the
// examples times the rows still open, not all rows.
func packRows(examples []example, L int, eot int32) []example {
	shortest := L
	for _, ex := range examples {
		shortest = min(shortest, ex.n)
	}
	shortest = max(shortest, minExampleTokens)
	var rows []example
	var open []int // rows with room for the shortest example, in row order
	for _, ex := range examples {
		at := -1
		for i, r := range open {
			if rows[r].n+ex.n <= L {
				at = i
				break
			}
		}
		if at < 0 {
			row := example{ids: make([]int32, L), mask: make([]byte, L), start: make([]uint16, L)}
			for i := range row.ids {
				row.ids[i] = eot
			}
			rows = append(rows, row)
			open = append(open, len(rows)-1)
			at = len(open) - 1
		}
		r := &rows[open[at]]
		o := r.n
		copy(r.ids[o:], ex.ids[:ex.n])
		copy(r.mask[o:], ex.mask[:ex.n])
		r.n += ex.n
		for i := o; i < r.n; i++ {
			r.start[i] = uint16(o)
		}
		for i := r.n; i < L; i++ {
			r.start[i] = uint16(r.n)
		}
		if L-r.n < shortest {
			open = append(open[:at], open[at+1:]...)
		}
	}
	return rows
}

// minExampleTokens is the fewest tokens an example has: a first token and at least one
// trained target after it.
const minExampleTokens = 2
