package worker

import (
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// Stragglers: a slow rank slows every step, since every other rank waits for it
// in the ring. Each rank times its steps (compute: forward and backward; wait:
// blocked on the ring after backward, i.e. waiting for the others) and keeps the
// means of its last clockWindow steps. Every step's loss all-reduce carries every
// rank's means in its own slots (the other ranks add zeros there, so the sums are
// the values exactly, and the step needs no extra message); rank 0 then holds all
// of them and sends them to the coordinator with its progress report, where
// status shows the slowest rank and how long the others waited for it.

// clockWindow is how many of its last steps a rank's reported means are over.
const clockWindow = 20

// rankClock is one rank's compute and wait times of its last clockWindow steps.
// It is used from the training loop's goroutine only.
type rankClock struct {
	compute, wait [clockWindow]time.Duration
	n, next       int
}

// add records one step.
func (c *rankClock) add(compute, wait time.Duration) {
	c.compute[c.next], c.wait[c.next] = compute, wait
	c.next = (c.next + 1) % clockWindow
	c.n = min(c.n+1, clockWindow)
}

// means returns the mean compute and wait per step over the recorded steps (zero
// before any).
func (c *rankClock) means() (compute, wait time.Duration) {
	if c.n == 0 {
		return 0, 0
	}
	var sc, sw time.Duration
	for i := range c.n {
		sc += c.compute[i]
		sw += c.wait[i]
	}
	return sc / time.Duration(c.n), sw / time.Duration(c.n)
}

// The step summary all-reduced after the gradient buckets: the loss sum, rank 0's
// stop code, the preference measures (trainer.PrefSlots sums and counts, zero for
// other objectives), then two slots per rank (compute, wait).
const (
	sumLoss  = 0
	sumStop  = 1
	sumPref  = 2
	sumRanks = sumPref + trainer.PrefSlots
)

// summaryLen is the length of the step summary of a ring of world ranks.
func summaryLen(world int) int { return sumRanks + 2*world }

// rankTimes reads every rank's means out of a reduced step summary, given as
// seconds (at) for members in ring order.
func rankTimes(members []string, at func(i int) float64) []*pb.RankTime {
	out := make([]*pb.RankTime, len(members))
	for r, id := range members {
		out[r] = &pb.RankTime{WorkerId: id, Rank: int32(r), ComputeS: at(sumRanks + 2*r), WaitS: at(sumRanks + 2*r + 1)}
	}
	return out
}
