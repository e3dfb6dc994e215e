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
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/progress"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// jobState is a worker's replica of the job: the prepared data, the model, the
// optimizer and the step, kept across generations.
type jobState struct {
	p         *trainer.Prepared
	tr        *trainer.Trainer
	data      *timedSource // the trainer's data, timed
	lastSaved int64        // step of the newest checkpoint written or restored
	lastCkpt  string
	loss      float64 // mean loss of the last step
	valLoss   float64
	start     time.Time
	startStep int64
	split     metrics.Split     // where the step time went
	progress  *progress.Printer // rank 0's progress output, made at its first step
	metrics   *json.Encoder
	metricsF  *os.File
}

// timedSource is a trainer.BatchSource that adds up the time spent reading
// batches, which the time split counts as waiting rather than compute. It is
// used from the training loop's goroutine only.
type timedSource struct {
	src  trainer.BatchSource
	took time.Duration
}

func (s *timedSource) Batch(ctx context.Context, stream int, step int64, inputs, targets []int32) error {
	t := time.Now()
	err := s.src.Batch(ctx, stream, step, inputs, targets)
	s.took += time.Since(t)
	return err
}

// lap returns the time spent reading since the last lap.
func (s *timedSource) lap() time.Duration {
	d := s.took
	s.took = 0
	return d
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
	spec, err := jobspec.Decode(st.GetState().GetJob())
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
	data := &timedSource{src: p.Loader}
	tr, err := trainer.New(p.Spec, m, model.NewAdamW(p.Spec.Model), data, int32(p.Tokenizer.Mask()))
	if err != nil {
		return nil, fatal(err)
	}
	js := &jobState{p: p, tr: tr, data: data, loss: nan(), valLoss: nan()}
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
			return js, w.auditLoad(tr, dir)
		case !errors.Is(err, model.ErrNoCheckpoint):
			return nil, fatal(fmt.Errorf("worker %s: resume from the run directory: %w", w.cfg.ID, err))
		}
		if err := trainer.InitWeights(tr); err != nil {
			return nil, fatal(err)
		}
		w.log.Info("job loaded: fresh weights", "params", len(m.Params.Slab))
		return js, w.auditLoad(tr, "init")
	}
	ck := cks[len(cks)-1]
	if err := trainer.RestoreCheckpoint(tr, p, ck.GetLocation()); err != nil {
		w.log.Warn("cannot read the committed checkpoint: will take the state from a peer", "dir", ck.GetLocation(), "err", err)
		tr.Step = noState
		return js, nil
	}
	js.lastSaved, js.lastCkpt = tr.Step, ck.GetLocation()
	w.log.Info("job loaded: restored the committed checkpoint", "step", tr.Step, "dir", ck.GetLocation())
	return js, w.auditLoad(tr, ck.GetLocation())
}

// runGeneration trains the job as a member of plan until it is done (nil error and
// the result) or the generation fails. ctx ends when a newer plan arrives.
func (w *Worker) runGeneration(ctx context.Context, js *jobState, plan *pb.Plan, svc *allreduce.Service, rep *reporter) (*Result, error) {
	// Building the ring and the state sync count as waiting in the first step.
	stepEnd := time.Now()
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
	sum := int64(0)
	if w.audit.enabled() {
		sum = checksum(js.tr.Model.Params.Slab)
		if err := w.audit.record(AuditRecord{Event: "state", Worker: w.cfg.ID, Generation: gen, Rank: rank, World: world,
			Step: js.tr.Step, Checksum: sum, Source: fmt.Sprint(root)}); err != nil {
			return nil, fatal(err)
		}
	}
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
	buckets := newBucketRun(ring, tr.Model.Grads.Slab, planBuckets(tr.Model.Grads, max(w.cfg.BucketBytes/4, 1)))
	intervalStart, intervalStep := time.Now(), tr.Step
	if rank == 0 && js.progress == nil {
		js.progress = progress.New(w.cfg.Progress, progress.Options{Steps: spec.Steps, StartStep: js.startStep,
			TokensPerStep: tokensPerStep, Every: spec.LogInterval})
	}
	js.data.lap()
	for tr.Step < spec.Steps {
		step := tr.Step
		w.curStep.Store(step)
		// The gradient buckets are reduced while backward runs, each as soon as
		// backward has finished it (trainer.Gradients hands the callback to the
		// last micro-batch, after which a range is final); the loss follows once
		// the micro-batches are done. All are waited for before clipping.
		t0 := time.Now()
		// Recorded before any bucket can start: from here on, this rank's streams
		// may be part of the step's sum.
		if err := w.audit.record(AuditRecord{Event: "contribute", Worker: w.cfg.ID, Generation: gen, Rank: rank, World: world,
			Step: step, Streams: streams}); err != nil {
			return nil, fatal(err)
		}
		buckets.begin(ctx)
		lossSum, err := tr.Gradients(ctx, step, streams, buckets.ready)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("step %d aborted: %w", step, context.Cause(ctx))
			}
			return nil, fatal(err)
		}
		buckets.flush()
		t1 := time.Now()
		lossBuf[0] = float32(lossSum)
		hl := ring.Start(ctx, lossBuf)
		busy, err := buckets.wait()
		if err := errors.Join(err, hl.Wait()); err != nil {
			return nil, fmt.Errorf("step %d: all-reduce: %w", step, err)
		}
		busy += hl.Busy()
		t2 := time.Now()
		norm, lr, err := tr.Apply()
		if err != nil {
			return nil, fatal(err)
		}
		t3 := time.Now()
		reading := js.data.lap()
		times := metrics.StepTimes{Compute: t1.Sub(t0) - reading, AllReduce: t2.Sub(t1), Optimizer: t3.Sub(t2),
			Waiting: t0.Sub(stepEnd) + reading, RingBusy: busy}
		stepEnd = t3
		js.split.Add(times)
		if w.audit.enabled() {
			before := sum
			sum = checksum(tr.Model.Params.Slab)
			if err := w.audit.record(AuditRecord{Event: "apply", Worker: w.cfg.ID, Generation: gen, Rank: rank, World: world,
				Step: step, Before: before, Checksum: sum}); err != nil {
				return nil, fatal(err)
			}
		}
		js.loss = 0
		if n := tr.GlobalTargets(step); n > 0 {
			js.loss = float64(lossBuf[0]) / float64(n)
		}
		w.cfg.Metrics.StepDone(tr.Step, js.loss, localTokens, times, arBytes)
		stepLog := log.With("step", tr.Step)
		stepLog.Debug("step", "loss", js.loss, "lr", lr, "grad_norm", norm, "compute", times.Compute,
			"allreduce", times.AllReduce, "ring_busy", times.RingBusy, "optimizer", times.Optimizer, "waiting", times.Waiting)
		if rank == 0 {
			rep.report(&pb.ReportProgressRequest{WorkerId: w.cfg.ID, Generation: gen, Step: tr.Step, Loss: js.loss, Tokens: tr.Step * tokensPerStep})
			rec := map[string]any{"step": tr.Step, "loss": js.loss, "lr": lr, "grad_norm": norm,
				"tokens": tr.Step * tokensPerStep, "generation": gen, "world_size": world,
				"step_s": times.Total().Seconds(), "compute_s": times.Compute.Seconds(), "allreduce_s": times.AllReduce.Seconds(),
				"allreduce_busy_s": times.RingBusy.Seconds(), "optimizer_s": times.Optimizer.Seconds(), "waiting_s": times.Waiting.Seconds(),
				"elapsed_s": time.Since(js.start).Seconds(), "time": time.Now().UTC().Format(time.RFC3339Nano)}
			if tr.Step%spec.LogInterval == 0 || tr.Step == spec.Steps {
				now := time.Now()
				tps := float64((tr.Step-intervalStep)*tokensPerStep) / now.Sub(intervalStart).Seconds()
				intervalStart, intervalStep = now, tr.Step
				rec["tokens_per_sec"] = tps
			}
			js.progress.Update(progress.Status{Step: tr.Step, Loss: js.loss, Workers: world})
			if js.p.Val != nil && ((spec.EvalInterval > 0 && tr.Step%spec.EvalInterval == 0) || tr.Step == spec.Steps) {
				te := time.Now()
				vl, err := tr.Evaluate(ctx, js.p.Val)
				if err != nil {
					if ctx.Err() != nil {
						return nil, fmt.Errorf("step %d: eval aborted: %w", tr.Step, context.Cause(ctx))
					}
					return nil, fatal(err)
				}
				// Evaluation is not part of any step's time.
				took := time.Since(te)
				stepEnd = stepEnd.Add(took)
				w.cfg.Metrics.EvalDone(took)
				js.valLoss = vl
				rec["val_loss"], rec["eval_s"] = vl, took.Seconds()
				rec["elapsed_s"] = time.Since(js.start).Seconds()
				js.progress.Println(fmt.Sprintf("step %*d/%d  val loss %.4f", digits(spec.Steps), tr.Step, spec.Steps, vl))
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
			Step: tr.Step, Loss: finite(js.loss), Tokens: tr.Step * tokensPerStep}, callPatience); err != nil {
			return nil, fmt.Errorf("report the final step: %w", err)
		}
		if c != nil {
			if err := sendCommit(ctx, w.cfg.Coordinators, log, c, callPatience); err != nil {
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
	if err := w.audit.record(AuditRecord{Event: "done", Worker: w.cfg.ID, Generation: gen, Rank: rank, World: world,
		Step: tr.Step, Checksum: checksum(tr.Model.Params.Slab)}); err != nil {
		return nil, fatal(err)
	}
	log.Info("job finished", "step", tr.Step, "loss", js.loss, "time_split", js.split.String())
	res := &Result{Step: tr.Step, Loss: js.loss, ValLoss: js.valLoss, Generation: gen, Rank: rank,
		Params: append([]float32(nil), tr.Model.Params.Slab...), Elapsed: time.Since(js.start), Split: js.split}
	if rank == 0 {
		res.Checkpoint = js.lastCkpt
	}
	return res, nil
}

// auditLoad records the state a job was loaded with.
func (w *Worker) auditLoad(tr *trainer.Trainer, source string) error {
	if !w.audit.enabled() {
		return nil
	}
	return fatal(w.audit.record(AuditRecord{Event: "load", Worker: w.cfg.ID, Step: tr.Step,
		Checksum: checksum(tr.Model.Params.Slab), Source: source}))
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

// closeMetrics ends the progress output and closes the metrics file.
func (w *Worker) closeMetrics(js *jobState) {
	js.progress.Finish()
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
