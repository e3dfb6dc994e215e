package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"time"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// ExactResult is what TrainExact measured: the same steps summed in float32 and in
// exact mode's fixed point, timed alternately.
type ExactResult struct {
	Params        int
	Streams       int
	Float, Exact  time.Duration // mean wall time of a step
	RelL2         float64       // the exact run's final weights against the float32 run's
	FloatLoss     float64       // mean loss per token of the last step
	ExactLossDiff float64       // |exact loss - float32 loss| of the last step
}

// TrainExact builds two GPT-2s of o's shape with the same weights and trains them
// on the same random tokens, one summing its o.Streams streams' gradients in float32
// (the normal path), the other in exact mode (trainer.Trainer.GradientsExact: one
// fixed-point conversion per stream, then the conversion back), alternating one step
// of each so that both see the same load. o.Batch sequences per step are split over
// o.Streams. It measures the single process's side of exact mode; the ring's (int64
// payloads, twice the bytes) is `bench allreduce --exact`'s. It writes the report to w.
func TrainExact(ctx context.Context, o TrainOptions, w io.Writer) (*ExactResult, error) {
	if o.Seq < 1 || o.Batch < 1 || o.Warmup < 0 || o.Steps < 1 || o.Threads < 1 || o.Streams < 1 || o.Batch%o.Streams != 0 {
		return nil, fmt.Errorf("%w: Seq, Batch, Steps, Threads and Streams must be positive, Batch a multiple of Streams and Warmup >= 0", ErrBadOptions)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(o.Threads))
	c := o.Model
	c.MaxSeqLen = o.Seq
	spec := trainer.DefaultSpec()
	spec.Model, spec.SeqLen, spec.MicroBatch, spec.Streams = c, o.Seq, o.Batch/o.Streams, o.Streams
	spec.Steps, spec.WarmupSteps, spec.Seed = int64(o.Warmup+o.Steps), 0, o.Seed
	mk := func(exact bool) (*trainer.Trainer, error) {
		s := spec
		s.Exact = exact
		m, err := model.New(c, nil)
		if err != nil {
			return nil, err
		}
		m.InitWeights(o.Seed)
		return trainer.New(s, m, model.NewAdamW(c), newRandomTokens(o.Seed, c.VocabSize), -1)
	}
	fl, err := mk(false)
	if err != nil {
		return nil, err
	}
	ex, err := mk(true)
	if err != nil {
		return nil, err
	}
	streams := spec.AllStreams()
	step := func(tr *trainer.Trainer) (float64, time.Duration, error) {
		t0 := time.Now()
		step := tr.Step
		loss, err := tr.StepGradients(ctx, step, streams)
		if err != nil {
			return 0, 0, err
		}
		if _, _, err := tr.Apply(); err != nil {
			return 0, 0, err
		}
		return tr.MeanLoss(step, loss), time.Since(t0), nil
	}
	res := &ExactResult{Params: c.NumParams(), Streams: o.Streams}
	fmt.Fprintf(w, "model: layers %d heads %d embd %d seq %d batch %d over %d streams, %d params; threads %d\n",
		c.Layers, c.Heads, c.Embd, o.Seq, o.Batch, o.Streams, res.Params, o.Threads)
	var tf, te time.Duration
	var lf, le float64
	for i := range o.Warmup + o.Steps {
		a, da, err := step(fl)
		if err != nil {
			return nil, err
		}
		b, db, err := step(ex)
		if err != nil {
			return nil, err
		}
		if i >= o.Warmup {
			tf, te = tf+da, te+db
		}
		lf, le = a, b
	}
	res.Float, res.Exact = tf/time.Duration(o.Steps), te/time.Duration(o.Steps)
	res.FloatLoss, res.ExactLossDiff = lf, math.Abs(le-lf)
	res.RelL2 = relL2(ex.Model.Params.Slab, fl.Model.Params.Slab)
	fmt.Fprintf(w, "timed %d steps of each after %d warmup, alternating: float32 sum %.2f ms/step, exact (fixed point) %.2f ms/step: exact/float %.3f\n",
		o.Steps, o.Warmup, ms(res.Float), ms(res.Exact), float64(res.Exact)/float64(res.Float))
	fmt.Fprintf(w, "after %d steps: loss %.4f (float32), differs by %.2g in exact mode; weights %.3g relative L2 apart\n",
		o.Warmup+o.Steps, res.FloatLoss, res.ExactLossDiff, res.RelL2)
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// relL2 returns ||a-b|| / ||b||.
func relL2(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	if n == 0 {
		return 0
	}
	return math.Sqrt(d / n)
}
