package worker

import (
	"context"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/trainer"
)

// ringReducer gives a trainer the sums over a generation's ring that the ppo
// objective makes inside a step (trainer.Reducer): its whitening statistics and
// measures (int64) and the gradients of its inner updates (float32). Every rank
// makes the same sums in the same order, before the step's gradient buckets start.
type ringReducer struct{ ring *allreduce.Ring }

func (r ringReducer) SumInt64(ctx context.Context, buf []int64) error {
	return r.ring.StartInt64(ctx, buf).Wait()
}

func (r ringReducer) SumFloat32(ctx context.Context, buf []float32) error {
	return r.ring.Start(ctx, buf).Wait()
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
		ValueLoss: s.ValueLoss, PolicyLoss: s.PolicyLoss, ResponseLen: s.Length})
}
