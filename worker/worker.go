package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/metrics"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// Config configures a Worker.
type Config struct {
	// ID is the worker's stable name in the cluster (required).
	ID string
	// Listen is the peer gRPC server's listen address (default "127.0.0.1:0"),
	// unless Listener is set.
	Listen string
	// Listener, when set, is used instead of Listen; Run closes it.
	Listener net.Listener
	// Advertise is the host:port other workers dial. Default: the bound address
	// when it names a host.
	Advertise string
	// Coordinators is the client of the coordinator cluster (required). The
	// worker does not close it.
	Coordinators *coordinator.Client
	// Device names the compute device reported to the coordinator (default "cpu").
	Device string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Progress receives one human-readable line per log interval while this
	// worker is rank 0; nil for none.
	Progress io.Writer
	// RingTimeout is the ring's progress timeout (default allreduce's, 5 s).
	RingTimeout time.Duration
	// ConnectTimeout bounds building the ring of a generation (default 10 s).
	ConnectTimeout time.Duration
	// RetryDelay is how long a worker whose ring failed waits for a newer plan
	// before it rebuilds the ring of the same generation (default 1 s).
	RetryDelay time.Duration
	// Metrics receives the worker's Prometheus instruments (metrics.NewWorker); nil
	// records none.
	Metrics *metrics.Worker
	// BucketBytes is the size from which gradients are reduced as a bucket of
	// their own while backward runs (default DefaultBucketBytes). Every worker of a
	// job must use the same value: the ring refuses operations that differ.
	BucketBytes int
	// Audit, when set, receives the audit log (audit.go): one JSON line per loaded
	// state, generation, contribution and applied update, for VerifyAudit. It costs
	// a checksum of the weights per step.
	Audit io.Writer
	// ProbeTimeout bounds the health check of each peer after a ring failure
	// (default 1 s); peers that do not answer are reported to the coordinator.
	ProbeTimeout time.Duration
}

// Result is what a finished Run reports.
type Result struct {
	Step       int64     // steps applied: the job's steps when it finished
	Loss       float64   // mean training loss of the last step this worker ran (NaN if none)
	ValLoss    float64   // last validation loss (rank 0 only; NaN if never evaluated)
	Checkpoint string    // last checkpoint written (rank 0 only)
	Generation uint64    // generation the job finished in
	Rank       int       // rank in that generation; -1 when the job had finished before this worker trained
	Params     []float32 // final parameter slab, owned by the caller (nil when Rank is -1)
	Elapsed    time.Duration
	Split      metrics.Split // where this worker's step time went, summed over its steps
}

// Worker is one training process of a cluster: build it with New, run it with Run
// (once).
type Worker struct {
	cfg  Config
	log  *slog.Logger
	lis  net.Listener
	addr string

	curGen  atomic.Uint64 // generation being trained, for heartbeats
	curStep atomic.Int64
	audit   *auditLog // nil unless Config.Audit is set
	plans   *planBox  // the newest plan, once Run watches them
}

// New validates cfg and binds the peer server's listener (so Addr is known before
// Run).
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.ID == "":
		return nil, fmt.Errorf("%w: ID is required", ErrBadConfig)
	case cfg.Coordinators == nil:
		return nil, fmt.Errorf("%w: Coordinators is required", ErrBadConfig)
	}
	if cfg.Device == "" {
		cfg.Device = "cpu"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.BucketBytes <= 0 {
		cfg.BucketBytes = DefaultBucketBytes
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lis := cfg.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("worker %s: listen %s: %w", cfg.ID, cfg.Listen, err)
		}
	}
	addr := cfg.Advertise
	if addr == "" {
		host, port, err := net.SplitHostPort(lis.Addr().String())
		if err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
			lis.Close()
			return nil, fmt.Errorf("%w: Advertise is required when listening on %s", ErrBadConfig, lis.Addr())
		}
		addr = net.JoinHostPort(host, port)
	}
	return &Worker{cfg: cfg, log: log.With("worker", cfg.ID), lis: lis, addr: addr, audit: newAuditLog(cfg.Audit)}, nil
}

// Addr returns the peer address the worker advertises.
func (w *Worker) Addr() string { return w.addr }

// Close releases the listener of a Worker whose Run was never called.
func (w *Worker) Close() error { return w.lis.Close() }

// Run registers the worker, serves its peers, follows the coordinator's plans and
// trains until the job is done (it then leaves the cluster and returns the result),
// ctx ends (it leaves and returns ctx's error), or a fatal error (a bad job,
// diverged replicas). It blocks; every goroutine it starts has ended when it returns.
func (w *Worker) Run(ctx context.Context) (res *Result, err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	svc := allreduce.NewService(allreduce.ServiceOptions{Member: w.cfg.ID, Logger: w.log})
	srv := grpc.NewServer(allreduce.ServerOptions()...)
	svc.Register(srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	wg.Go(func() {
		if err := srv.Serve(w.lis); err != nil {
			w.log.Warn("peer server stopped", "err", err)
		}
	})
	defer func() {
		cancel()
		svc.Close()
		srv.Stop()
		wg.Wait()
	}()

	w.plans = newPlanBox()
	lease, err := w.register(ctx)
	if err != nil {
		return nil, err
	}
	defer w.leave(ctx)
	w.log.Info("registered", "addr", w.addr, "lease", lease)

	plans := w.plans
	rep := newReporter(w.cfg.Coordinators, w.log)
	wg.Go(func() { w.heartbeat(ctx, lease) })
	wg.Go(func() { rep.run(ctx) })
	wg.Go(func() {
		err := w.cfg.Coordinators.WatchPlan(ctx, w.cfg.ID, 0, func(p *pb.Plan) error {
			plans.set(p)
			return nil
		})
		if ctx.Err() == nil {
			w.log.Error("watching plans stopped", "err", err)
		}
	})

	var job *jobState
	defer func() {
		if job != nil {
			w.closeMetrics(job)
		}
	}()
	var after uint64
	for {
		plan, err := plans.next(ctx, after)
		if err != nil {
			return nil, err
		}
		after = plan.GetGeneration()
		log := w.log.With("generation", plan.GetGeneration())
		rank := coordinator.RankOf(plan, w.cfg.ID)
		if plan.GetState() != pb.PlanState_PLAN_STATE_ACTIVE || rank < 0 {
			if res := w.finishedJob(ctx); res != nil {
				log.Info("the job has already finished: nothing to do", "step", res.Step, "checkpoint", res.Checkpoint)
				return res, nil
			}
			log.Info("not a member of this plan: waiting", "state", plan.GetState(), "reason", plan.GetReason())
			continue
		}
		if job == nil {
			if job, err = w.loadJob(ctx); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
		}
		gctx, done := plans.scope(ctx, plan.GetGeneration())
		res, err := w.runGeneration(gctx, job, plan, svc, rep)
		done()
		switch {
		case err == nil:
			return res, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case isFatal(err):
			log.Error("stopping", "err", err)
			return nil, err
		case plans.newer(plan.GetGeneration()):
			log.Info("generation superseded", "step", job.tr.Step, "err", err)
			continue
		}
		log.Warn("generation failed; retrying unless a new plan arrives", "step", job.tr.Step, "err", err, "retry_in", w.cfg.RetryDelay)
		w.reportUnreachable(ctx, plan)
		if plans.waitNewer(ctx, plan.GetGeneration(), w.cfg.RetryDelay) {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		after = plan.GetGeneration() - 1 // rebuild the ring of the same generation
	}
}

// register registers the worker. A worker held off after its peers reported it lost
// (a restarted process, or one cut off from its peers) waits and tries again, and
// once held off it registers only when it can reach a member of the newest plan,
// so that a worker cut off from its peers does not rejoin only to break the next
// ring.
// finishedJob returns the result of a job the coordinator records as finished (its
// committed progress at the job's last step), or nil. A worker that joins after the
// end, or that was held off while its peers finished, thus returns instead of
// waiting for a plan that will never come.
func (w *Worker) finishedJob(ctx context.Context) *Result {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := w.cfg.Coordinators.Status(sctx, false)
	if err != nil {
		return nil
	}
	job, prog := st.GetState().GetJob(), st.GetState().GetProgress()
	if job == nil || job.GetSteps() <= 0 || prog.GetStep() < job.GetSteps() {
		return nil
	}
	res := &Result{Step: prog.GetStep(), Loss: prog.GetLoss(), ValLoss: math.NaN(), Rank: -1, Generation: w.curGen.Load()}
	if cks := st.GetState().GetCheckpoints(); len(cks) > 0 {
		res.Checkpoint = cks[len(cks)-1].GetLocation()
	}
	return res
}

func (w *Worker) register(ctx context.Context) (time.Duration, error) {
	heldOff := false
	for {
		if heldOff && !w.canReachPeers(ctx) {
			w.log.Info("held off and no member of the plan answers: waiting before registering again")
		} else {
			resp, err := w.cfg.Coordinators.Register(ctx, &pb.RegisterRequest{WorkerId: w.cfg.ID, Address: w.addr, Device: w.cfg.Device})
			switch {
			case errors.Is(err, coordinator.ErrHeldOff):
				if !heldOff {
					w.log.Info("held off by the coordinator: registering again later", "err", err)
				}
				heldOff = true
			case err != nil:
				return 0, fmt.Errorf("worker %s: register: %w", w.cfg.ID, err)
			default:
				return time.Duration(resp.GetLeaseMs()) * time.Millisecond, nil
			}
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("worker %s: register: %w", w.cfg.ID, ctx.Err())
		case <-t.C:
		}
	}
}

// leave removes the worker from the cluster at once, so its peers need not wait for
// its lease to expire. It runs even when ctx has ended.
func (w *Worker) leave(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.cfg.Coordinators.Leave(lctx, &pb.LeaveRequest{WorkerId: w.cfg.ID}); err != nil {
		w.log.Warn("leave", "err", err)
		return
	}
	w.log.Info("left the cluster")
}

// heartbeat renews the lease every third of it until ctx ends, registering again if
// the coordinator has forgotten the worker.
func (w *Worker) heartbeat(ctx context.Context, lease time.Duration) {
	for {
		interval := max(lease/3, 50*time.Millisecond)
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, lease)
		resp, err := w.cfg.Coordinators.Heartbeat(hctx, &pb.HeartbeatRequest{
			WorkerId: w.cfg.ID, Generation: w.curGen.Load(), Step: w.curStep.Load()})
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, coordinator.ErrUnknownWorker):
			w.log.Warn("lease lost: registering again")
			if l, err := w.register(ctx); err == nil {
				lease = l
			} else if ctx.Err() == nil {
				w.log.Warn("register again", "err", err)
			}
		case err != nil:
			w.log.Warn("heartbeat", "err", err)
		default:
			if l := time.Duration(resp.GetLeaseMs()) * time.Millisecond; l > 0 {
				lease = l
			}
		}
	}
}

// planBox holds the newest plan the watcher delivered and the contexts of the
// generations being trained, which a newer plan cancels.
type planBox struct {
	mu      sync.Mutex
	plan    *pb.Plan
	changed chan struct{} // closed and replaced when a plan arrives
	scopes  map[*genScope]struct{}
}

type genScope struct {
	gen    uint64
	cancel context.CancelCauseFunc
}

// errSuperseded is the cause of a generation's context when a newer plan arrives.
var errSuperseded = errors.New("worker: superseded by a newer plan")

func newPlanBox() *planBox {
	return &planBox{changed: make(chan struct{}), scopes: map[*genScope]struct{}{}}
}

func (b *planBox) set(p *pb.Plan) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.plan = p
	close(b.changed)
	b.changed = make(chan struct{})
	for s := range b.scopes {
		if s.gen < p.GetGeneration() {
			s.cancel(errSuperseded)
			delete(b.scopes, s)
		}
	}
}

func (b *planBox) get() (*pb.Plan, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.plan, b.changed
}

func (b *planBox) newer(gen uint64) bool {
	p, _ := b.get()
	return p.GetGeneration() > gen
}

// next blocks until a plan newer than generation after is known, and returns it.
func (b *planBox) next(ctx context.Context, after uint64) (*pb.Plan, error) {
	for {
		p, ch := b.get()
		if p != nil && p.GetGeneration() > after {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// waitNewer waits up to d for a plan newer than gen and reports whether one came.
func (b *planBox) waitNewer(ctx context.Context, gen uint64, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		p, ch := b.get()
		if p.GetGeneration() > gen {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		case <-ch:
		}
	}
}

// scope returns a context for training generation gen: it ends with ctx, or as soon
// as a newer plan arrives (cause errSuperseded).
func (b *planBox) scope(ctx context.Context, gen uint64) (context.Context, func()) {
	gctx, cancel := context.WithCancelCause(ctx)
	s := &genScope{gen: gen, cancel: cancel}
	b.mu.Lock()
	if b.plan.GetGeneration() > gen {
		cancel(errSuperseded)
	} else {
		b.scopes[s] = struct{}{}
	}
	b.mu.Unlock()
	return gctx, func() {
		b.mu.Lock()
		delete(b.scopes, s)
		b.mu.Unlock()
		cancel(nil)
	}
}

// reporter sends progress and checkpoint records to the coordinator from its own
// goroutine, so that a slow or failing-over coordinator never blocks a step. Only
// the newest progress is kept; checkpoint commits are queued.
type reporter struct {
	cl       *coordinator.Client
	log      *slog.Logger
	wake     chan struct{}
	patience time.Duration // per call
	pause    time.Duration // before retrying commits that failed

	mu       sync.Mutex
	progress *pb.ReportProgressRequest
	commits  []*pb.CommitCheckpointRequest
}

// callPatience is how long one report or commit keeps retrying before the reporter
// sets it aside; commitPause is how long a commit set aside waits for its next try.
const (
	callPatience = 10 * time.Second
	commitPause  = time.Second
)

func newReporter(cl *coordinator.Client, log *slog.Logger) *reporter {
	return &reporter{cl: cl, log: log, wake: make(chan struct{}, 1), patience: callPatience, pause: commitPause}
}

func (r *reporter) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) report(p *pb.ReportProgressRequest) {
	r.mu.Lock()
	r.progress = p
	r.mu.Unlock()
	r.poke()
}

func (r *reporter) commit(c *pb.CommitCheckpointRequest) {
	r.mu.Lock()
	r.commits = append(r.commits, c)
	r.mu.Unlock()
	r.poke()
}

func (r *reporter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			r.mu.Lock()
			p, cs := r.progress, r.commits
			r.progress, r.commits = nil, nil
			r.mu.Unlock()
			if p == nil && len(cs) == 0 {
				break
			}
			if p != nil {
				sendReport(ctx, r.cl, r.log, p, r.patience)
			}
			var retry []*pb.CommitCheckpointRequest
			for _, c := range cs {
				if err := sendCommit(ctx, r.cl, r.log, c, r.patience); err != nil && ctx.Err() == nil && !permanent(err) {
					retry = append(retry, c)
				}
			}
			if len(retry) > 0 {
				// The coordinator is unreachable for longer than a call's patience (a
				// partitioned leader, an election): keep the commits, in order, and try
				// again shortly. Training does not wait for them.
				r.mu.Lock()
				r.commits = append(retry, r.commits...)
				r.mu.Unlock()
				t := time.NewTimer(r.pause)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
	}
}

// permanent reports a coordinator error that retrying cannot fix: the request is
// invalid, contradicts committed state, or belongs to a generation that has passed.
func permanent(err error) bool {
	for _, e := range []error{coordinator.ErrBadCommand, coordinator.ErrConflict, coordinator.ErrStaleGeneration,
		coordinator.ErrNotMember, coordinator.ErrUnknownWorker, coordinator.ErrNoJob} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func sendReport(ctx context.Context, cl *coordinator.Client, log *slog.Logger, p *pb.ReportProgressRequest, patience time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	_, err := cl.ReportProgress(ctx, p)
	if err != nil && ctx.Err() == nil {
		log.Warn("report progress", "step", p.GetStep(), "generation", p.GetGeneration(), "err", err)
	}
	return err
}

func sendCommit(ctx context.Context, cl *coordinator.Client, log *slog.Logger, c *pb.CommitCheckpointRequest, patience time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	_, err := cl.CommitCheckpoint(ctx, c)
	if err != nil {
		log.Warn("commit checkpoint", "step", c.GetStep(), "generation", c.GetGeneration(), "err", err)
	} else {
		log.Info("checkpoint committed", "step", c.GetStep(), "dir", c.GetLocation())
	}
	return err
}
