package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/trainer"
)

// ringReducer gives a trainer the sums over a generation's ring that the ppo
// objective makes inside a step (trainer.Reducer): its whitening statistics and
// measures (int64) and the gradients of its inner updates (float32). Every rank
// makes the same sums in the same order, before the step's gradient buckets start.
// Its errors wrap errRingSum, so that the step is retried as after a failed
// gradient all-reduce, not failed for good.
type ringReducer struct{ ring *allreduce.Ring }

// errRingSum marks the failure of a sum the trainer made over the ring.
var errRingSum = errors.New("worker: sum over the ring failed")

func (r ringReducer) SumInt64(ctx context.Context, buf []int64) error {
	if err := r.ring.StartInt64(ctx, buf).Wait(); err != nil {
		return fmt.Errorf("%w: %w", errRingSum, err)
	}
	return nil
}

func (r ringReducer) SumFloat32(ctx context.Context, buf []float32) error {
	if err := r.ring.Start(ctx, buf).Wait(); err != nil {
		return fmt.Errorf("%w: %w", errRingSum, err)
	}
	return nil
}

// ppoBooks adds a ppo step's measures to its metrics record (rec, rank 0) and to
// the worker's Prometheus gauges; nothing for the other objectives.
func (w *Worker) ppoBooks(tr *trainer.Trainer, rec trainer.Record) {
	if tr.Spec.Objective != trainer.PPO {
		return
	}
	s := tr.PPO
	if rec != nil {
		s.Record(rec)
	}
	w.cfg.Metrics.SetPPO(metrics.PPOValues{Reward: s.Score, KL: s.KL, Entropy: s.Entropy, ClipFrac: s.ClipFrac,
		ValueLoss: s.ValueLoss, PolicyLoss: s.PolicyLoss, ResponseLen: s.Length, Beta: s.Beta})
}
