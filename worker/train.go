package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// jobState is a worker's replica of the job: the prepared data, the model, the
// optimizer and the step, kept across generations.
type jobState struct {
	p         *trainer.Prepared
	tr        *trainer.Trainer
	lastSaved int64 // step of the newest checkpoint written or restored
	lastCkpt  string
	loss      float64 // mean loss of the last step
	valLoss   float64
	start     time.Time
	startStep int64
	metrics   *json.Encoder
	metricsF  *os.File
}

// loadJob reads the job from the coordinator, prepares its data and model, and
// restores the newest committed checkpoint (or initialises the weights when there is
// none). A committed checkpoint this worker cannot read leaves it without state: it
// then receives the state from a peer.
func (w *Worker) loadJob(ctx context.Context) (*jobState, error) {
	st, err := w.cfg.Coordinators.Status(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("worker %s: read job: %w", w.cfg.ID, err)
	}
	if st.GetState().GetJob() == nil {
		return nil, fmt.Errorf("worker %s: %w", w.cfg.ID, coordinator.ErrNoJob)
	}
	spec, err := coordinator.SpecFromJob(st.GetState().GetJob())
	if err != nil {
		return nil, fatal(err)
	}
	p, err := trainer.Prepare(ctx, spec)
	if err != nil {
		return nil, fatal(fmt.Errorf("worker %s: prepare job: %w", w.cfg.ID, err))
	}
	m, err := model.New(p.Spec.Model, nil)
	if err != nil {
		return nil, fatal(err)
	}
	tr, err := trainer.New(p.Spec, m, model.NewAdamW(p.Spec.Model), p.Loader, int32(p.Tokenizer.Mask()))
	if err != nil {
		return nil, fatal(err)
	}
	js := &jobState{p: p, tr: tr, loss: nan(), valLoss: nan()}
	cks := st.GetState().GetCheckpoints()
	if len(cks) == 0 {
		// Nothing committed: resume from the run directory's newest checkpoint, as the
		// single-process trainer does, else start afresh.
		dir, err := model.LatestCheckpoint(trainer.CheckpointRoot(p.Spec.Out))
		switch {
		case err == nil:
			if err := trainer.RestoreCheckpoint(tr, p, dir); err != nil {
				return nil, fatal(fmt.Errorf("worker %s: resume from the run directory: %w", w.cfg.ID, err))
			}
			js.lastSaved, js.lastCkpt = tr.Step, dir
			w.log.Info("job loaded: resumed from the run directory", "step", tr.Step, "dir", dir)
			return js, nil
		case !errors.Is(err, model.ErrNoCheckpoint):
			return nil, fatal(fmt.Errorf("worker %s: resume from the run directory: %w", w.cfg.ID, err))
		}
		if err := trainer.InitWeights(tr); err != nil {
			return nil, fatal(err)
		}
		w.log.Info("job loaded: fresh weights", "params", len(m.Params.Slab))
		return js, nil
	}
	ck := cks[len(cks)-1]
	if err := trainer.RestoreCheckpoint(tr, p, ck.GetLocation()); err != nil {
		w.log.Warn("cannot read the committed checkpoint: will take the state from a peer", "dir", ck.GetLocation(), "err", err)
		tr.Step = noState
		return js, nil
	}
	js.lastSaved, js.lastCkpt = tr.Step, ck.GetLocation()
	w.log.Info("job loaded: restored the committed checkpoint", "step", tr.Step, "dir", ck.GetLocation())
	return js, nil
}

// runGeneration trains the job as a member of plan until it is done (nil error and
// the result) or the generation fails. ctx ends when a newer plan arrives.
func (w *Worker) runGeneration(ctx context.Context, js *jobState, plan *pb.Plan, svc *allreduce.Service, rep *reporter) (*Result, error) {
	gen := plan.GetGeneration()
	rank := coordinator.RankOf(plan, w.cfg.ID)
	streams := coordinator.StreamsOf(plan, w.cfg.ID)
	world := len(plan.GetMembers())
	log := w.log.With("generation", gen, "rank", rank)
	w.curGen.Store(gen)
	w.cfg.Metrics.SetGeneration(gen, world)

	addrs := map[string]string{}
	for _, wk := range plan.GetWorkers() {
		addrs[wk.GetId()] = wk.GetAddress()
	}
	cfg := allreduce.Config{Generation: gen, Members: plan.GetMembers(), Rank: rank, ProgressTimeout: w.cfg.RingTimeout, Logger: log}
	cctx, cancel := context.WithTimeout(ctx, w.cfg.ConnectTimeout)
	t, err := svc.Connect(cctx, cfg, allreduce.LinkOptions{Resolve: func(_ context.Context, member string) (string, error) {
		a, ok := addrs[member]
		if !ok || a == "" {
			return "", fmt.Errorf("worker: plan %d has no address for member %q", gen, member)
		}
		return a, nil
	}})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect ring: %w", err)
	}
	ring, err := allreduce.NewRing(cfg, t)
	if err != nil {
		return nil, fmt.Errorf("build ring: %w", err)
	}
	defer ring.Close()

	root, newest, err := syncState(ctx, ring, js.tr)
	if err != nil {
		return nil, err
	}
	if err := checkReplicas(ctx, ring, js.tr); err != nil {
		return nil, err
	}
	w.cfg.Metrics.SetStep(js.tr.Step)
	log.Info("generation started", "world", world, "streams", streams, "step", newest, "state_from_rank", root)

	tr, spec := js.tr, js.tr.Spec
	if js.start.IsZero() {
		js.start, js.startStep = time.Now(), tr.Step
	}
	tokensPerStep := int64(spec.GlobalBatch() * spec.SeqLen)
	lossBuf := make([]float32, 1)
	// Tokens and all-reduce payload of one step on this worker.
	localTokens := int64(len(streams) * spec.MicroBatch * spec.SeqLen)
	arBytes := int64(4 * (len(tr.Model.Grads.Slab) + len(lossBuf)))
	intervalStart, intervalStep := time.Now(), tr.Step
	for tr.Step < spec.Steps {
		step := tr.Step
		w.curStep.Store(step)
		t0 := time.Now()
		lossSum, err := tr.Gradients(ctx, step, streams, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("step %d aborted: %w", step, context.Cause(ctx))
			}
			return nil, fatal(err)
		}
		t1 := time.Now()
		lossBuf[0] = float32(lossSum)
		hg := ring.Start(ctx, tr.Model.Grads.Slab)
		hl := ring.Start(ctx, lossBuf)
		if err := errors.Join(hg.Wait(), hl.Wait()); err != nil {
			return nil, fmt.Errorf("step %d: all-reduce: %w", step, err)
		}
		t2 := time.Now()
		norm, lr, err := tr.Apply()
		if err != nil {
			return nil, fatal(err)
		}
		t3 := time.Now()
		js.loss = 0
		if n := tr.GlobalTargets(step); n > 0 {
			js.loss = float64(lossBuf[0]) / float64(n)
		}
		w.cfg.Metrics.StepDone(tr.Step, js.loss, localTokens, t3.Sub(t0), arBytes, t2.Sub(t1))
		stepLog := log.With("step", tr.Step)
		stepLog.Debug("step", "loss", js.loss, "lr", lr, "grad_norm", norm,
			"compute", t1.Sub(t0), "allreduce", t2.Sub(t1), "optimizer", t3.Sub(t2))
		if rank == 0 {
			rep.report(&pb.ReportProgressRequest{WorkerId: w.cfg.ID, Generation: gen, Step: tr.Step, Loss: js.loss, Tokens: tr.Step * tokensPerStep})
			rec := map[string]any{"step": tr.Step, "loss": js.loss, "lr": lr, "grad_norm": norm,
				"tokens": tr.Step * tokensPerStep, "generation": gen, "world_size": world,
				"compute_s": t1.Sub(t0).Seconds(), "allreduce_s": t2.Sub(t1).Seconds(), "optimizer_s": t3.Sub(t2).Seconds(),
				"time": time.Now().UTC().Format(time.RFC3339Nano)}
			if tr.Step%spec.LogInterval == 0 || tr.Step == spec.Steps {
				now := time.Now()
				tps := float64((tr.Step-intervalStep)*tokensPerStep) / now.Sub(intervalStart).Seconds()
				intervalStart, intervalStep = now, tr.Step
				rec["tokens_per_sec"] = tps
				w.printProgress(js, tps, world)
			}
			if js.p.Val != nil && ((spec.EvalInterval > 0 && tr.Step%spec.EvalInterval == 0) || tr.Step == spec.Steps) {
				vl, err := tr.Evaluate(ctx, js.p.Val)
				if err != nil {
					if ctx.Err() != nil {
						return nil, fmt.Errorf("step %d: eval aborted: %w", tr.Step, context.Cause(ctx))
					}
					return nil, fatal(err)
				}
				js.valLoss = vl
				rec["val_loss"] = vl
				if w.cfg.Progress != nil {
					fmt.Fprintf(w.cfg.Progress, "step %*d/%d  val loss %.4f\n", digits(spec.Steps), tr.Step, spec.Steps, vl)
				}
				stepLog.Info("eval", "val_loss", vl)
			}
			w.writeMetrics(js, rec)
		}
		if spec.CheckpointInterval > 0 && tr.Step%spec.CheckpointInterval == 0 && tr.Step < spec.Steps {
			if err := checkReplicas(ctx, ring, tr); err != nil {
				return nil, err
			}
			if rank == 0 {
				if c, err := w.saveCheckpoint(js, gen, stepLog); err != nil {
					return nil, fatal(err)
				} else if c != nil {
					rep.commit(c)
				}
			}
		}
	}
	w.curStep.Store(tr.Step)

	// The job is done: compare the replicas once more, let rank 0 record the final
	// step and checkpoint (synchronously, so that the job reads as finished before
	// anyone leaves), then meet at a barrier.
	if err := checkReplicas(ctx, ring, tr); err != nil {
		return nil, err
	}
	if rank == 0 {
		c, err := w.saveCheckpoint(js, gen, log)
		if err != nil {
			return nil, fatal(err)
		}
		if err := sendReport(ctx, w.cfg.Coordinators, log, &pb.ReportProgressRequest{WorkerId: w.cfg.ID, Generation: gen,
			Step: tr.Step, Loss: finite(js.loss), Tokens: tr.Step * tokensPerStep}); err != nil {
			return nil, fmt.Errorf("report the final step: %w", err)
		}
		if c != nil {
			if err := sendCommit(ctx, w.cfg.Coordinators, log, c); err != nil {
				return nil, fmt.Errorf("commit the final checkpoint: %w", err)
			}
		}
		w.closeMetrics(js)
	}
	if err := ring.Barrier(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("final barrier: %w", err)
		}
		// Every step is applied and the replicas compared equal above: a peer that
		// passed the barrier first and closed its links can fail ours, and that must
		// not make this rank wait for a plan that will never come.
		log.Warn("final barrier failed after the last step; finishing", "err", err)
	}
	log.Info("job finished", "step", tr.Step, "loss", js.loss)
	res := &Result{Step: tr.Step, Loss: js.loss, ValLoss: js.valLoss, Generation: gen, Rank: rank,
		Params: append([]float32(nil), tr.Model.Params.Slab...), Elapsed: time.Since(js.start)}
	if rank == 0 {
		res.Checkpoint = js.lastCkpt
	}
	return res, nil
}

// saveCheckpoint writes the checkpoint of the current step unless it exists, and
// returns the commit request for it (nil when nothing new was written).
func (w *Worker) saveCheckpoint(js *jobState, gen uint64, log *slog.Logger) (*pb.CommitCheckpointRequest, error) {
	tr := js.tr
	if tr.Step == js.lastSaved || tr.Step == 0 {
		return nil, nil
	}
	dir := model.CheckpointDir(trainer.CheckpointRoot(tr.Spec.Out), tr.Step)
	if _, err := os.Stat(dir); err == nil {
		// Written before a fail-over by this or another rank 0 with the same bits.
		log.Info("checkpoint already on disk", "dir", dir)
	} else if dir, err = trainer.SaveCheckpoint(tr, js.p, finite(js.loss)); err != nil {
		return nil, fmt.Errorf("write checkpoint: %w", err)
	}
	digest, err := model.CheckpointDigest(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint digest: %w", err)
	}
	js.lastSaved, js.lastCkpt = tr.Step, dir
	log.Info("checkpoint written", "dir", dir)
	return &pb.CommitCheckpointRequest{WorkerId: w.cfg.ID, Generation: gen, Step: tr.Step, Location: dir, Sha256: digest}, nil
}

func (w *Worker) printProgress(js *jobState, tps float64, world int) {
	if w.cfg.Progress == nil {
		return
	}
	tr, spec := js.tr, js.tr.Spec
	elapsed := time.Since(js.start)
	var eta time.Duration
	if done := tr.Step - js.startStep; done > 0 {
		eta = time.Duration(float64(elapsed) / float64(done) * float64(spec.Steps-tr.Step))
	}
	fmt.Fprintf(w.cfg.Progress, "step %*d/%d  loss %.4f  %6.0f tok/s  workers %d  elapsed %s  eta %s\n",
		digits(spec.Steps), tr.Step, spec.Steps, js.loss, tps, world, elapsed.Round(time.Second), eta.Round(time.Second))
}

// writeMetrics appends one JSON line to <out>/metrics.jsonl (rank 0). A failure to
// write metrics is logged, never fatal.
func (w *Worker) writeMetrics(js *jobState, rec map[string]any) {
	if js.metrics == nil {
		out := js.tr.Spec.Out
		if err := os.MkdirAll(out, 0o755); err != nil {
			w.log.Warn("metrics file", "err", err)
			return
		}
		f, err := os.OpenFile(filepath.Join(out, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			w.log.Warn("metrics file", "err", err)
			return
		}
		js.metricsF, js.metrics = f, json.NewEncoder(f)
	}
	if err := js.metrics.Encode(rec); err != nil {
		w.log.Warn("metrics file", "err", err)
	}
}

func (w *Worker) closeMetrics(js *jobState) {
	if js.metricsF != nil {
		js.metricsF.Close()
		js.metricsF, js.metrics = nil, nil
	}
}

func digits(n int64) int { return len(fmt.Sprint(n)) }

// finite maps NaN (no step run yet) to 0, which JSON and the coordinator accept.
func finite(v float64) float64 {
	if v != v {
		return 0
	}
	return v
}
