package worker

import (
	"context"
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/trainer"
)

// intPieces is how many float32 values carry one int64 on the ring: four 16-bit
// pieces, each an integer that float32 holds exactly, so a broadcast or a sum with
// zeros moves it without rounding.
const intPieces = 4

// noState is the step of a rank that has no usable state (a committed checkpoint it
// could not read): it is never chosen as the source of a state sync.
const noState = -1

func putInt64(dst []float32, v int64) {
	u := uint64(v)
	for i := range intPieces {
		dst[i] = float32((u >> (16 * i)) & 0xffff)
	}
}

func getInt64(src []float32) int64 {
	var u uint64
	for i := range intPieces {
		u |= uint64(src[i]) << (16 * i)
	}
	return int64(u)
}

// gatherInt64 gives every rank the values of every rank: out[r] is rank r's vals.
// Every rank passes the same number of values. It is an all-reduce of a buffer in
// which each rank fills only its own slot, so every sum is exact.
func gatherInt64(ctx context.Context, ring *allreduce.Ring, vals []int64) ([][]int64, error) {
	w, n := ring.World(), len(vals)
	buf := make([]float32, w*n*intPieces)
	for i, v := range vals {
		putInt64(buf[(ring.Rank()*n+i)*intPieces:], v)
	}
	if err := ring.AllReduce(ctx, buf); err != nil {
		return nil, err
	}
	out := make([][]int64, w)
	for r := range out {
		out[r] = make([]int64, n)
		for i := range n {
			out[r][i] = getInt64(buf[(r*n+i)*intPieces:])
		}
	}
	return out, nil
}

// packState lays out a replica's state in one buffer: parameters, AdamW first and
// second moments, then the AdamW step and the trainer step as exact integers, the
// ppo KL coefficient's float64 bits (trainer.Trainer.PPOBeta) and the tokens the
// ppo steps processed (trainer.Trainer.PPOTokens; both 0 for the other objectives).
func packState(tr *trainer.Trainer) []float32 {
	n := len(tr.Model.Params.Slab)
	buf := make([]float32, stateLen(n))
	copy(buf, tr.Model.Params.Slab)
	copy(buf[n:], tr.Opt.M)
	copy(buf[2*n:], tr.Opt.V)
	putInt64(buf[3*n:], tr.Opt.Step)
	putInt64(buf[3*n+intPieces:], tr.Step)
	putInt64(buf[3*n+2*intPieces:], int64(math.Float64bits(tr.PPOBeta)))
	putInt64(buf[3*n+3*intPieces:], tr.PPOTokens)
	return buf
}

// stateLen is the length of packState's buffer for n parameters.
func stateLen(n int) int { return 3*n + 4*intPieces }

func unpackState(tr *trainer.Trainer, buf []float32) {
	n := len(tr.Model.Params.Slab)
	copy(tr.Model.Params.Slab, buf[:n])
	copy(tr.Opt.M, buf[n:2*n])
	copy(tr.Opt.V, buf[2*n:3*n])
	tr.Opt.Step = getInt64(buf[3*n:])
	tr.Step = getInt64(buf[3*n+intPieces:])
	tr.PPOBeta = math.Float64frombits(uint64(getInt64(buf[3*n+2*intPieces:])))
	tr.PPOTokens = getInt64(buf[3*n+3*intPieces:])
}

// syncState makes every rank's state that of the rank at the newest applied step
// (the lowest such rank), which it returns with that step. The ranks first exchange
// their steps and weight checksums; when every rank already holds the same step and
// weights (a generation that only added a coordinator fail-over, or ranks that all
// finished the same step), nothing more is sent. Otherwise the source broadcasts its
// parameters, moments and steps, and the others' states are replaced.
func syncState(ctx context.Context, ring *allreduce.Ring, tr *trainer.Trainer) (root int, newest int64, err error) {
	steps, err := gatherInt64(ctx, ring, []int64{tr.Step, checksum(tr.Model.Params.Slab)})
	if err != nil {
		return 0, 0, fmt.Errorf("exchange steps: %w", err)
	}
	root, newest = 0, int64(noState)
	same := true
	for r, s := range steps {
		if s[0] > newest {
			root, newest = r, s[0]
		}
		if s[0] != steps[0][0] || s[1] != steps[0][1] {
			same = false
		}
	}
	if newest == noState {
		return 0, 0, fatal(fmt.Errorf("%w: no member has the job's state (the committed checkpoint could not be read by any of them)", ErrNoState))
	}
	if ring.World() == 1 || same {
		return root, newest, nil
	}
	var buf []float32
	if ring.Rank() == root {
		buf = packState(tr)
	} else {
		buf = make([]float32, stateLen(len(tr.Model.Params.Slab)))
	}
	if err := ring.Broadcast(ctx, root, buf); err != nil {
		return 0, 0, fmt.Errorf("broadcast state from rank %d: %w", root, err)
	}
	if ring.Rank() != root {
		unpackState(tr, buf)
	}
	return root, newest, nil
}

// checksum is a 64-bit FNV-1a-style hash of the parameter bits: equal on replicas
// that hold the same bits, different (with overwhelming probability) otherwise.
func checksum(slab []float32) int64 {
	h := uint64(14695981039346656037)
	for _, v := range slab {
		h ^= uint64(mathFloat32bits(v))
		h *= 1099511628211
	}
	// Keep it non-negative so it never reads as noState anywhere.
	return int64(h >> 1)
}

// checkReplicas compares every rank's weight checksum and step; a difference is a
// fatal ErrDiverged naming the ranks.
func checkReplicas(ctx context.Context, ring *allreduce.Ring, tr *trainer.Trainer) error {
	if ring.World() == 1 {
		return nil
	}
	all, err := gatherInt64(ctx, ring, []int64{tr.Step, checksum(tr.Model.Params.Slab)})
	if err != nil {
		return fmt.Errorf("compare weight checksums: %w", err)
	}
	for r, v := range all {
		if v[0] != all[0][0] || v[1] != all[0][1] {
			return fatal(fmt.Errorf("%w: rank %d has step %d checksum %016x, rank 0 has step %d checksum %016x",
				ErrDiverged, r, v[0], v[1], all[0][0], all[0][1]))
		}
	}
	return nil
}
