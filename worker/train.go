package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// jobState is a worker's replica of the job: the prepared data, the model, the
// optimizer and the step, kept across generations.
type jobState struct {
	p         *trainer.Prepared
	tr        *trainer.Trainer
	data      *timedSource // the trainer's data, timed
	version   uint64       // the coordinator's job version of the job (0: unknown)
	lastSaved int64        // step of the newest checkpoint written or restored
	lastCkpt  string
	loss      float64           // mean loss of the last step
	pref      trainer.PrefStats // the last step's preference measures (all ranks)
	valLoss   float64
	valStep   int64 // step of valLoss, which the checkpoint of that step records
	start     time.Time
	startStep int64
	// startTokens is the tokens processed by startStep (trainer.Trainer.TokensSeen).
	startTokens int64
	split       metrics.Split       // where the step time went
	books       *trainer.Bookkeeper // rank 0's metrics.jsonl and progress output, made at its first generation as rank 0
	// stop is the stopping rule that holds, once one does: rank 0 decides it
	// (stopAfter) and every rank learns it from the next step's loss all-reduce.
	stop trainer.StopReason
	// committed is the step of the newest checkpoint this worker saw the
	// coordinator commit: checkpoints older than it may be deleted (prune).
	committed int64
	// gen and rank are this worker's place in the last generation it trained in
	// (rank -1 before the first): the rank 0 of it writes the checkpoint on stop.
	gen  uint64
	rank int
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

// TrainedTargets passes the SFT loss denominator through (trainer.TargetCounter).
func (s *timedSource) TrainedTargets(ctx context.Context, step int64) (int64, error) {
	c, ok := s.src.(trainer.TargetCounter)
	if !ok {
		return 0, fmt.Errorf("worker: the data source does not count trained targets")
	}
	return c.TrainedTargets(ctx, step)
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
	if p.ObjectiveNote != "" {
		w.log.Info("objective", "note", p.ObjectiveNote)
	}
	m, err := model.New(p.Spec.Model, w.cfg.Backend)
	if err != nil {
		return nil, fatal(err)
	}
	data := &timedSource{src: p.Loader}
	tr, err := trainer.New(p.Spec, m, model.NewAdamW(p.Spec.Model), data, int32(p.Tokenizer.Mask()))
	if err != nil {
		return nil, fatal(err)
	}
	js := &jobState{p: p, tr: tr, data: data, loss: math.NaN(), valLoss: math.NaN(), valStep: -1, rank: -1, version: st.GetState().GetJobVersion()}
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
		if err := trainer.InitWeights(tr, p); err != nil {
			return nil, fatal(err)
		}
		w.log.Info("job loaded: fresh weights", "params", len(m.Params.Slab))
		return js, w.auditLoad(tr, "init")
	}
	ck := cks[len(cks)-1]
	js.committed = ck.GetStep()
	if err := trainer.RestoreCommitted(tr, p, ck.GetLocation(), ck.GetSha256()); err != nil {
		w.log.Error("cannot restore the committed checkpoint: will take the state from a peer", "dir", ck.GetLocation(), "step", ck.GetStep(), "err", err)
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
	g, err := w.connect(ctx, plan, svc)
	if err != nil {
		return nil, err
	}
	defer g.ring.Close()
	js.gen, js.rank = g.gen, g.rank
	if err := w.syncReplicas(ctx, js, g); err != nil {
		return nil, err
	}
	w.startSteps(js, g)
	js.tr.SetReducer(ringReducer{ring: g.ring})
	for js.tr.Step < js.tr.Spec.Steps {
		times, norm, lr, err := w.step(ctx, js, g)
		if err != nil {
			js.tr.Rollback() // a ppo step's inner updates are undone before the state is shared again
		}
		if errors.Is(err, errStopped) {
			break
		}
		if err != nil {
			return nil, err
		}
		if g.rank == 0 {
			if err := w.keepBooks(ctx, js, g, rep, times, norm, lr); err != nil {
				return nil, err
			}
		}
		if g.cadence.Checkpoint(js.tr.Step) {
			if err := w.checkpoint(ctx, js, g, rep); err != nil {
				return nil, err
			}
		}
		if g.rank == 0 {
			w.stopAfter(js, g)
		}
	}
	w.curStep.Store(js.tr.Step)
	return w.finishJob(ctx, js, g)
}

// errStopped is what step returns when the step's loss all-reduce carries rank 0's
// decision to stop: no rank applies the step, and the job ends at the step before.
var errStopped = errors.New("worker: the job stops early")

// stopAfter is rank 0's stopping decision after the step js.tr has applied, its
// books and checkpoint done (trainer.Bookkeeper.Stop: max_time, target_val_loss,
// patience). Once a rule holds the decision stands, across generations too, and
// step carries it to every rank. Only rank 0 evaluates and its clock alone counts,
// so only it decides: the other ranks learn it in the next step's loss all-reduce,
// and all of them stop at the same step (see step).
func (w *Worker) stopAfter(js *jobState, g *generation) {
	if js.stop != "" {
		return
	}
	if js.stop = js.books.Stop(js.tr.Step); js.stop != "" {
		js.books.Stopped(js.tr.Step, js.stop)
		g.log.Info("stopping early", "step", js.tr.Step, "rule", string(js.stop))
	}
}

// The stopping rules as the loss all-reduce carries them: rank 0 adds the code of
// its decision (the other ranks add 0), so the sum is the code, exactly.
var stopCodes = []trainer.StopReason{"", trainer.StopTarget, trainer.StopPatience, trainer.StopMaxTime}

func stopCode(r trainer.StopReason) float32 {
	if i := slices.Index(stopCodes, r); i > 0 {
		return float32(i)
	}
	return float32(len(stopCodes)) // a rule this worker does not name still stops the job
}

func stopReason(code float32) trainer.StopReason {
	if i := int(code); i >= 0 && i < len(stopCodes) && float32(i) == code {
		return stopCodes[i]
	}
	return trainer.StopReason(fmt.Sprintf("rule %v", code))
}

// generation is a worker's part in one plan generation: its place in the plan, the
// ring over the plan's members, and the state of its step loop. It is used from the
// training loop's goroutine only.
type generation struct {
	gen     uint64
	rank    int
	world   int   // ring members
	streams []int // this rank's streams
	log     *slog.Logger
	ring    *allreduce.Ring
	cadence trainer.Cadence

	buckets *bucketRun
	// The step summary reduced after the gradient buckets (straggler.go): the
	// loss sum, rank 0's stop code (stopCode) and every rank's step times. In
	// exact mode it travels as integers (sumInts: the loss in fixed point, the
	// times in nanoseconds) beside the fixed-point gradients (exactAcc).
	lossBuf  []float32
	exact    bool
	exactAcc []int64
	sumInts  []int64
	clock    rankClock // this rank's step times
	members  []string  // the plan's members in ring order
	arBytes  int64     // all-reduce payload of one step
	// stepEnd is when the last step ended, its evaluation excluded: the next
	// step's waiting starts there. Before the first step it is when the generation
	// began, so that building the ring and the state sync count as waiting.
	stepEnd time.Time
	sum     int64 // the weights' checksum after the last step (audit only)
}

// connect builds the ring of plan's generation.
func (w *Worker) connect(ctx context.Context, plan *pb.Plan, svc *allreduce.Service) (*generation, error) {
	g := &generation{stepEnd: time.Now(), gen: plan.GetGeneration(), rank: coordinator.RankOf(plan, w.cfg.ID),
		streams: coordinator.StreamsOf(plan, w.cfg.ID), world: len(plan.GetMembers()), members: plan.GetMembers()}
	g.log = w.log.With("generation", g.gen, "rank", g.rank)
	w.curGen.Store(g.gen)
	w.cfg.Metrics.SetGeneration(g.gen, g.world)

	addrs := map[string]string{}
	for _, wk := range plan.GetWorkers() {
		addrs[wk.GetId()] = wk.GetAddress()
	}
	cfg := allreduce.Config{Generation: g.gen, Members: plan.GetMembers(), Rank: g.rank, ProgressTimeout: w.cfg.RingTimeout,
		Logger: w.log} // the ring adds generation and rank itself
	cctx, cancel := context.WithTimeout(ctx, w.cfg.ConnectTimeout)
	t, err := svc.Connect(cctx, cfg, allreduce.LinkOptions{Resolve: func(_ context.Context, member string) (string, error) {
		a, ok := addrs[member]
		if !ok || a == "" {
			return "", fmt.Errorf("worker: plan %d has no address for member %q", g.gen, member)
		}
		return a, nil
	}, TLS: w.cfg.TLS})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect ring: %w", err)
	}
	if g.ring, err = allreduce.NewRing(cfg, t); err != nil {
		return nil, fmt.Errorf("build ring: %w", err)
	}
	return g, nil
}

// syncReplicas gives every rank of g the newest state (syncState), checks that the
// replicas agree, and records the state in the audit log.
func (w *Worker) syncReplicas(ctx context.Context, js *jobState, g *generation) error {
	root, newest, err := syncState(ctx, g.ring, js.tr)
	if err != nil {
		return err
	}
	if err := checkReplicas(ctx, g.ring, js.tr); err != nil {
		return err
	}
	w.cfg.Metrics.SetStep(js.tr.Step)
	if w.audit.enabled() {
		g.sum = checksum(js.tr.Model.Params.Slab)
		if err := w.audit.record(AuditRecord{Event: "state", Worker: w.cfg.ID, Generation: g.gen, Rank: g.rank, World: g.world,
			Step: js.tr.Step, Checksum: g.sum, Source: fmt.Sprint(root)}); err != nil {
			return fatal(err)
		}
	}
	g.log.Info("generation started", "world", g.world, "streams", g.streams, "step", newest, "state_from_rank", root)
	return nil
}

// startSteps readies g's step loop: the job's clock (at its first generation), the
// gradient buckets and, on rank 0, the books (made at its first generation as rank
// 0, kept across generations), whose tokens/s window starts afresh. Rank 0 announces
// the run (trainer.RunInfo: the start banner and warnings) when it makes the books.
func (w *Worker) startSteps(js *jobState, g *generation) {
	tr, spec := js.tr, js.tr.Spec
	if js.start.IsZero() {
		js.start, js.startStep, js.startTokens = time.Now(), tr.Step, tr.TokensSeen()
	}
	g.cadence = js.p.Cadence()
	spans := cutBuckets(tr.Model.Grads, max(w.cfg.BucketBytes/4, 1))
	if g.exact = spec.Exact; g.exact {
		g.exactAcc = make([]int64, len(tr.Model.Grads.Slab))
		g.sumInts = make([]int64, summaryLen(g.world))
		g.arBytes = int64(8 * (len(g.exactAcc) + len(g.sumInts)))
		g.buckets = newExactBucketRun(g.ring, g.exactAcc, spans)
	} else {
		g.lossBuf = make([]float32, summaryLen(g.world))
		g.arBytes = int64(4 * (len(tr.Model.Grads.Slab) + len(g.lossBuf)))
		g.buckets = newBucketRun(g.ring, tr.Model.Grads.Slab, spans)
	}
	if g.rank == 0 {
		if js.books == nil && tr.Step < spec.Steps {
			info := trainer.Describe(js.p, tr.Step, js.lastCkpt)
			info.Workers = g.world
			info.Announce(w.cfg.Progress, w.log)
		}
		if js.books == nil {
			js.books = trainer.NewBookkeeper(spec, g.cadence, trainer.BookkeeperOptions{Progress: w.cfg.Progress,
				Start: js.start, StartStep: js.startStep, StartTokens: js.startTokens, NoTensorBoard: w.cfg.NoTensorBoard})
		}
		if err := js.books.StartWindow(tr.TokensSeen()); err != nil {
			w.log.Warn("metrics file", "err", err)
		}
	}
	js.data.lap()
}

// step runs the step js.tr is at as a member of g: the gradients of this rank's
// streams, summed over the ring, then the optimizer. It returns the step's time
// split, the gradient norm before clipping and the learning rate.
//
// The step's loss all-reduce carries rank 0's stopping decision (js.stop, made after
// the step before): when the sum says stop, no rank applies this step's gradients,
// every rank records the rule in js.stop, and step returns errStopped. The gradient
// buckets are reduced as always, so their bits do not depend on the decision, and
// every rank of the generation stops after the same step, the one rank 0 decided
// after. The decision costs no extra message, only the gradients of the one step
// that is not applied.
func (w *Worker) step(ctx context.Context, js *jobState, g *generation) (times metrics.StepTimes, norm, lr float64, err error) {
	tr := js.tr
	step := tr.Step
	w.curStep.Store(step)
	t0 := time.Now()
	// Recorded before any bucket can start: from here on, this rank's streams
	// may be part of the step's sum.
	if err := w.audit.record(AuditRecord{Event: "contribute", Worker: w.cfg.ID, Generation: g.gen, Rank: g.rank, World: g.world,
		Step: step, Streams: g.streams}); err != nil {
		return times, 0, 0, fatal(err)
	}
	stop := float32(0)
	if g.rank == 0 && js.stop != "" {
		stop = stopCode(js.stop)
	}
	if d := w.cfg.ComputeDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return times, 0, 0, fmt.Errorf("step %d aborted: %w", step, context.Cause(ctx))
		}
	}
	sums, err := g.gradients(ctx, tr, step, stop)
	if err != nil {
		return times, 0, 0, err
	}
	t1, busy := sums.backwardEnd, sums.busy
	if code := sums.stop; code != 0 {
		js.stop = stopReason(code)
		g.log.Info("stopping early at rank 0's decision: the step in flight is discarded", "step", step, "rule", string(js.stop))
		return times, 0, 0, errStopped
	}
	t2 := time.Now()
	if g.exact {
		tr.ExactGrads(g.exactAcc) // the optimizer phase counts the conversion
	}
	if norm, lr, err = tr.Apply(); err != nil {
		return times, 0, 0, fatal(err)
	}
	t3 := time.Now()
	reading := js.data.lap()
	times = metrics.StepTimes{Compute: t1.Sub(t0) - reading, AllReduce: t2.Sub(t1), Optimizer: t3.Sub(t2),
		Waiting: t0.Sub(g.stepEnd) + reading, RingBusy: busy}
	g.stepEnd = t3
	js.split.Add(times)
	g.clock.add(times.Compute, times.AllReduce)
	w.cfg.Metrics.SetRankTimes(g.clock.means())
	if w.audit.enabled() {
		before := g.sum
		g.sum = checksum(tr.Model.Params.Slab)
		if err := w.audit.record(AuditRecord{Event: "apply", Worker: w.cfg.ID, Generation: g.gen, Rank: g.rank, World: g.world,
			Step: step, Before: before, Checksum: g.sum}); err != nil {
			return times, 0, 0, fatal(err)
		}
	}
	js.loss, js.pref = tr.MeanLoss(step, sums.loss), sums.pref
	w.cfg.Metrics.StepDone(tr.Step, js.loss, tr.LocalStepTokens(len(g.streams)), times, g.arBytes)
	if js.pref.Pairs > 0 {
		w.cfg.Metrics.Preference(js.pref.Accuracy(), js.pref.MeanMargin(), js.pref.MeanChosen(), js.pref.MeanRejected())
	}
	g.log.Debug("step", "step", tr.Step, "loss", js.loss, "lr", lr, "grad_norm", norm, "compute", times.Compute,
		"allreduce", times.AllReduce, "ring_busy", times.RingBusy, "optimizer", times.Optimizer, "waiting", times.Waiting)
	return times, norm, lr, nil
}

// stepSums is what a step's reductions gave: the loss sum of the global batch,
// its preference measures, rank 0's stop code, when this rank's backward ended and
// how long the ring was busy.
type stepSums struct {
	loss        float64
	pref        trainer.PrefStats
	stop        float32
	backwardEnd time.Time
	busy        time.Duration
}

// gradients computes the gradients of this rank's streams at step and sums them,
// and the step summary (the loss sum, rank 0's stop code and the ranks' step
// times), over the ring. The gradient buckets are reduced while backward runs,
// each as soon as backward has finished it (trainer.Gradients hands the callback
// to the last micro-batch, after which a range is final); the summary follows once
// the micro-batches are done, with stop (rank 0's stop code, 0 on the other ranks)
// in it. All are waited for before it returns; the model's gradients then hold the
// sum, except in exact mode, where the gradients and the summary are reduced as
// integers (exactGradients) and step converts the sum (trainer.Trainer.ExactGrads).
func (g *generation) gradients(ctx context.Context, tr *trainer.Trainer, step int64, stop float32) (stepSums, error) {
	if g.exact {
		return g.exactGradients(ctx, tr, step, stop)
	}
	var sums stepSums
	g.buckets.begin(ctx)
	lossSum, err := tr.Gradients(ctx, step, g.streams, g.buckets.ready)
	if err != nil {
		return sums, g.gradientsErr(ctx, step, err)
	}
	g.buckets.flush()
	sums.backwardEnd = time.Now()
	clear(g.lossBuf)
	g.lossBuf[sumLoss], g.lossBuf[sumStop] = float32(lossSum), stop
	tr.Pref.Put(g.lossBuf[sumPref:])
	compute, wait := g.clock.means()
	g.lossBuf[sumRanks+2*g.rank], g.lossBuf[sumRanks+2*g.rank+1] = float32(compute.Seconds()), float32(wait.Seconds())
	hl := g.ring.Start(ctx, g.lossBuf)
	busy, err := g.buckets.wait()
	if err := errors.Join(err, hl.Wait()); err != nil {
		return sums, fmt.Errorf("step %d: all-reduce: %w", step, err)
	}
	sums.loss, sums.stop, sums.busy = float64(g.lossBuf[sumLoss]), g.lossBuf[sumStop], busy+hl.Busy()
	sums.pref = trainer.PrefStatsOf(g.lossBuf[sumPref:])
	return sums, nil
}

// exactGradients is gradients in exact mode: each stream's gradient is converted to
// fixed point on its own (trainer.Trainer.GradientsExact) and the buckets of the
// integer sum are reduced as integers, so the sum does not depend on which rank owns
// which stream; the summary is reduced as integers too. step converts the sum back
// into the model's gradients once, after the reductions.
func (g *generation) exactGradients(ctx context.Context, tr *trainer.Trainer, step int64, stop float32) (stepSums, error) {
	var sums stepSums
	g.buckets.begin(ctx)
	lossSum, err := tr.GradientsExact(ctx, step, g.streams, g.exactAcc, g.buckets.ready)
	if err != nil {
		return sums, g.gradientsErr(ctx, step, err)
	}
	g.buckets.flush()
	sums.backwardEnd = time.Now()
	clear(g.sumInts)
	g.sumInts[sumLoss], g.sumInts[sumStop] = lossSum, int64(stop)
	copy(g.sumInts[sumPref:sumPref+trainer.PrefSlots], tr.PrefFixed[:])
	compute, wait := g.clock.means()
	g.sumInts[sumRanks+2*g.rank], g.sumInts[sumRanks+2*g.rank+1] = int64(compute), int64(wait)
	hl := g.ring.StartInt64(ctx, g.sumInts)
	busy, err := g.buckets.wait()
	if err := errors.Join(err, hl.Wait()); err != nil {
		return sums, fmt.Errorf("step %d: all-reduce: %w", step, err)
	}
	sums.loss, sums.stop, sums.busy = trainer.ExactLossSum(g.sumInts[sumLoss]), float32(g.sumInts[sumStop]), busy+hl.Busy()
	sums.pref = trainer.PrefFixed(g.sumInts[sumPref : sumPref+trainer.PrefSlots]).Stats()
	return sums, nil
}

// rankTimes returns every rank's step times from the last step's summary.
func (g *generation) rankTimes() []*pb.RankTime {
	if g.exact {
		return rankTimes(g.members, func(i int) float64 { return time.Duration(g.sumInts[i]).Seconds() })
	}
	return rankTimes(g.members, func(i int) float64 { return float64(g.lossBuf[i]) })
}

// gradientsErr is the error of a step whose gradients failed: the abort of a
// cancelled step, a failed sum over the ring inside the step (errRingSum), else
// fatal (bad data, or a gradient exact mode cannot hold).
func (g *generation) gradientsErr(ctx context.Context, step int64, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("step %d aborted: %w", step, context.Cause(ctx))
	}
	if errors.Is(err, errRingSum) {
		// A sum over the ring inside the step (ppo) failed: a ring fault, retried
		// in a new generation like a failed gradient all-reduce.
		return fmt.Errorf("step %d: all-reduce: %w", step, err)
	}
	return fatal(err)
}

// keepBooks is rank 0's bookkeeping after a step: the progress report to the
// coordinator, the step's metrics record with the cluster's fields, the progress
// output and, when the cadence says so, an evaluation. A metrics file that cannot be
// written is logged, never fatal.
func (w *Worker) keepBooks(ctx context.Context, js *jobState, g *generation, rep *reporter, times metrics.StepTimes, norm, lr float64) error {
	tr := js.tr
	rep.report(&pb.ReportProgressRequest{WorkerId: w.cfg.ID, Generation: g.gen, Step: tr.Step, Loss: js.loss, Tokens: tr.TokensSeen(),
		Ranks: g.rankTimes()})
	rec := js.books.Step(trainer.StepDone{Step: tr.Step, Tokens: tr.TokensSeen(), Loss: js.loss, LR: lr, GradNorm: norm, Workers: g.world})
	js.pref.Record(rec)
	rec["generation"], rec["world_size"] = g.gen, g.world
	w.ppoBooks(tr, rec)
	rec["step_s"], rec["compute_s"], rec["allreduce_s"] = times.Total().Seconds(), times.Compute.Seconds(), times.AllReduce.Seconds()
	rec["allreduce_busy_s"], rec["optimizer_s"], rec["waiting_s"] = times.RingBusy.Seconds(), times.Optimizer.Seconds(), times.Waiting.Seconds()
	if g.cadence.Evaluate(tr.Step) {
		te := time.Now()
		ev, err := tr.EvaluateFull(ctx, js.p.Val)
		vl := ev.Loss
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("step %d: eval aborted: %w", tr.Step, context.Cause(ctx))
			}
			return fatal(err)
		}
		// Evaluation is not part of any step's time.
		took := time.Since(te)
		g.stepEnd = g.stepEnd.Add(took)
		w.cfg.Metrics.EvalDone(took)
		js.valLoss, js.valStep = vl, tr.Step
		rec["eval_s"] = took.Seconds()
		js.books.Evaluated(rec, tr.Step, vl)
		if tr.Spec.Objective == trainer.SFT {
			js.books.EvaluatedAccuracy(rec, tr.Step, ev.Accuracy)
			g.log.Info(trainer.EvalLogMessage, "step", tr.Step, "val_loss", vl, "val_token_acc", ev.Accuracy)
		} else {
			g.log.Info(trainer.EvalLogMessage, "step", tr.Step, "val_loss", vl)
		}
	}
	if err := js.books.Write(rec); err != nil {
		w.log.Warn("metrics file", "err", err)
	}
	return nil
}

// checkpoint is the interval checkpoint after the step js.tr has applied: every rank
// compares its replica, and rank 0 writes the checkpoint and hands its commit to the
// reporter.
func (w *Worker) checkpoint(ctx context.Context, js *jobState, g *generation, rep *reporter) error {
	if err := checkReplicas(ctx, g.ring, js.tr); err != nil {
		return err
	}
	if g.rank != 0 {
		return nil
	}
	log := g.log.With("step", js.tr.Step)
	c, err := w.saveCheckpoint(js, g.gen, log)
	if err != nil {
		return fatal(err)
	}
	if c != nil {
		rep.commit(c)
	}
	js.committed = max(js.committed, rep.committedStep(js.version))
	w.prune(ctx, js, log)
	return nil
}

// finishJob ends the job after its last step, or after the step at which it stopped
// early (js.stop): it compares the replicas once more, lets rank 0 record the final
// step and commit the final checkpoint, marked final with the stop reason
// (synchronously, so that the job reads FINISHED before anyone leaves) and delete
// the checkpoints keep_checkpoints lets go, then meets the other ranks at a barrier
// and returns this worker's result.
func (w *Worker) finishJob(ctx context.Context, js *jobState, g *generation) (*Result, error) {
	tr, log := js.tr, g.log
	if err := checkReplicas(ctx, g.ring, tr); err != nil {
		return nil, err
	}
	if g.rank == 0 {
		c, err := w.saveCheckpoint(js, g.gen, log)
		if err != nil {
			return nil, fatal(err)
		}
		if c == nil {
			// The final step's checkpoint was written before (an interval
			// checkpoint at the step the job stopped at, one restored, or one
			// written by a rank 0 before a fail-over): commit it again, which is
			// accepted for the same digest and marks it final.
			if c, err = w.recommit(js, g.gen); err != nil {
				return nil, fatal(err)
			}
		}
		// sendReport and sendCommit name the step and generation themselves: w.log,
		// not log, which has the generation already.
		if err := sendReport(ctx, w.cfg.Coordinators, w.log, &pb.ReportProgressRequest{WorkerId: w.cfg.ID, Generation: g.gen,
			Step: tr.Step, Loss: finite(js.loss), Tokens: tr.TokensSeen(), Ranks: g.rankTimes()}, callPatience); err != nil {
			return nil, fmt.Errorf("report the final step: %w", err)
		}
		if c != nil {
			c.Final = true
			if tr.Step < tr.Spec.Steps {
				c.StopReason = string(js.stop)
			}
			if err := sendCommit(ctx, w.cfg.Coordinators, w.log, c, callPatience); err != nil {
				return nil, fmt.Errorf("commit the final checkpoint: %w", err)
			}
			js.committed = max(js.committed, c.GetStep())
		}
		w.prune(ctx, js, log)
		w.closeMetrics(js)
	}
	if err := g.ring.Barrier(ctx); err != nil {
		if ctx.Err() != nil && !(errors.Is(context.Cause(ctx), errSuperseded) && w.finalStepRecorded(ctx, js, log)) {
			return nil, fmt.Errorf("final barrier: %w", err)
		}
		// Every step is applied and the replicas compared equal above: a peer that
		// passed the barrier first and closed its links can fail ours, and that must
		// not make this rank wait for a plan that will never come.
		log.Warn("final barrier failed after the last step; finishing", "err", err)
	}
	if err := w.audit.record(AuditRecord{Event: "done", Worker: w.cfg.ID, Generation: g.gen, Rank: g.rank, World: g.world,
		Step: tr.Step, Checksum: checksum(tr.Model.Params.Slab)}); err != nil {
		return nil, fatal(err)
	}
	log.Info("job finished", "step", tr.Step, "loss", js.loss, "stopped", string(js.stop), "time_split", js.split.String())
	res := &Result{Step: tr.Step, StartStep: js.startStep, Loss: js.loss, ValLoss: js.valLoss, Generation: g.gen, Rank: g.rank,
		Params: append([]float32(nil), tr.Model.Params.Slab...), Elapsed: time.Since(js.start), Split: js.split, Stopped: js.stop}
	if g.rank == 0 {
		res.Checkpoint = js.lastCkpt
	}
	return res, nil
}

// stopCheckpoint is Config.CheckpointOnStop's checkpoint, written after Run's ctx
// ended while the worker had the job: when it was rank 0 of the last generation it
// trained in, it writes a checkpoint of the last step it applied (unless that step
// has one, or none was applied) into the run directory. It is not committed: the
// coordinator stops with the cluster (the other members are leaving, so its
// generation is over anyway), and a rerun of the same run directory resumes from
// the newest checkpoint there. It returns rank 0's Result of the stop (Step,
// Checkpoint: the checkpoint of that step), or nil on the other ranks, before any
// step, or when the write failed. The step interrupted in flight left the state
// untouched (a step's update is applied whole after its all-reduce, a state sync's
// only after the whole state arrived), so the state is that of a step every rank
// agreed on.
func (w *Worker) stopCheckpoint(js *jobState) *Result {
	tr := js.tr
	if js.rank != 0 || tr.Step <= 0 {
		return nil
	}
	log := w.log.With("generation", js.gen, "rank", js.rank, "step", tr.Step)
	if _, err := w.saveCheckpoint(js, js.gen, log); err != nil {
		log.Error("stopping: the checkpoint of the last step could not be written", "err", err)
		return nil
	}
	if js.lastSaved != tr.Step {
		return nil
	}
	log.Info("stopped: checkpoint of the last step", "dir", js.lastCkpt)
	return &Result{Step: tr.Step, StartStep: js.startStep, Loss: js.loss, ValLoss: js.valLoss, Generation: js.gen, Rank: 0,
		Checkpoint: js.lastCkpt, Elapsed: time.Since(js.start), Split: js.split}
}

// finalStepRecorded reports whether the coordinator records the step at which the
// job ended (its last step, or the step at which it stopped early: js.tr.Step) as its
// progress, waiting up to callPatience for rank 0's report. It is asked when the final
// barrier fails because a newer plan arrived: a rank that passed the barrier first has
// left, which makes the next plan, and the job is over once rank 0's final report is
// in. Without that report (rank 0 failed before it), the worker goes on to the next
// plan, whose rank 0 then ends the job at the same step and records it. The
// generation's context has ended (ctx), so the wait uses one of its own.
func (w *Worker) finalStepRecorded(ctx context.Context, js *jobState, log *slog.Logger) bool {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callPatience)
	defer cancel()
	for {
		st, err := w.cfg.Coordinators.Status(sctx, false)
		if err == nil && st.GetState().GetProgress().GetStep() >= js.tr.Step {
			return true
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-sctx.Done():
			t.Stop()
			log.Warn("the job ended, but its final step is not recorded", "step", js.tr.Step, "err", err)
			return false
		case <-t.C:
		}
	}
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
	valLoss := math.NaN()
	if js.valStep == tr.Step {
		valLoss = js.valLoss
	}
	if _, err := os.Stat(dir); err == nil {
		// Written before a fail-over by this or another rank 0 with the same bits.
		log.Info("checkpoint already on disk", "dir", dir)
	} else if dir, err = trainer.SaveCheckpoint(tr, js.p, finite(js.loss), valLoss); err != nil {
		return nil, fmt.Errorf("write checkpoint: %w", err)
	}
	js.lastSaved, js.lastCkpt = tr.Step, dir
	log.Info("checkpoint written", "dir", dir)
	return w.commitRequest(js, gen)
}

// commitRequest returns the commit request of js's newest checkpoint, written or
// restored at step js.lastSaved.
func (w *Worker) commitRequest(js *jobState, gen uint64) (*pb.CommitCheckpointRequest, error) {
	digest, err := model.CheckpointDigest(js.lastCkpt)
	if err != nil {
		return nil, fmt.Errorf("checkpoint digest: %w", err)
	}
	return &pb.CommitCheckpointRequest{WorkerId: w.cfg.ID, Generation: gen, Step: js.lastSaved, Location: js.lastCkpt, Sha256: digest, JobVersion: js.version}, nil
}

// prune deletes, on rank 0, the checkpoints that keep_checkpoints lets go
// (trainer.Retain) now that the coordinator has committed the one of step
// js.committed: it keeps the newest N, the best by validation loss, the newest
// committed one (restore reads it) and every newer one (their commits may be on the
// way). A checkpoint is committed only once durable, so nothing is deleted before a
// newer checkpoint is. A failure to delete is logged, never fatal.
func (w *Worker) prune(ctx context.Context, js *jobState, log *slog.Logger) {
	spec := js.tr.Spec
	if spec.KeepCheckpoints <= 0 || js.committed <= 0 {
		return
	}
	deleted, err := trainer.PruneCheckpoints(ctx, trainer.CheckpointRoot(spec.Out), spec.KeepCheckpoints, js.committed)
	for _, d := range deleted {
		log.Info("checkpoint deleted", "dir", d, "keep_checkpoints", spec.KeepCheckpoints, "committed_step", js.committed)
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("deleting old checkpoints", "err", err)
	}
}

// recommit returns the commit request of the checkpoint js last wrote or restored
// when it is of the current step (nil otherwise), for a checkpoint already on disk.
func (w *Worker) recommit(js *jobState, gen uint64) (*pb.CommitCheckpointRequest, error) {
	if js.lastCkpt == "" || js.lastSaved != js.tr.Step {
		return nil, nil
	}
	digest, err := model.CheckpointDigest(js.lastCkpt)
	if err != nil {
		return nil, fmt.Errorf("checkpoint digest: %w", err)
	}
	return &pb.CommitCheckpointRequest{WorkerId: w.cfg.ID, Generation: gen, Step: js.tr.Step, Location: js.lastCkpt, Sha256: digest, JobVersion: js.version}, nil
}

// closeMetrics ends rank 0's progress output and closes its metrics and event
// files, if this worker has been rank 0. An event file that cannot be synced is
// logged, never fatal.
func (w *Worker) closeMetrics(js *jobState) {
	if js.books != nil {
		if err := js.books.Close(); err != nil {
			w.log.Warn("metrics file", "err", err)
		}
	}
}

// finite maps NaN (no step run yet) to 0, which JSON and the coordinator accept.
func finite(v float64) float64 {
	if v != v {
		return 0
	}
	return v
}
