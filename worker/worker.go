package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/ringtrain/ringtrain/security"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/trainer"
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
	// DataAddress is where the TCP lanes of incoming ring links are served
	// ("host:port"; ":7101" for every interface on a fixed port a network policy
	// can name). Default: the host of each link's gRPC connection, on a free port.
	DataAddress string
	// Advertise is the host:port other workers dial. Default: the bound address
	// when it names a host.
	Advertise string
	// Coordinators is the coordinator cluster (required): a *coordinator.Client,
	// or a *coordinator.Inmem in tests. The worker does not close it.
	Coordinators Coordinator
	// Backend is what the model computes on (nil: the CPU). Every worker of a local
	// cluster may share one.
	Backend tensor.Backend
	// Device names the compute device reported to the coordinator; empty means what
	// the backend reports (Backend.Device(): "cpu", "cuda:0 NVIDIA H200").
	Device string
	// Zone is the worker's topology label (a Kubernetes node's
	// topology.kubernetes.io/zone, a rack): the coordinator keeps a zone's workers
	// adjacent in the ring so that it crosses zone boundaries as few times as
	// possible. "" is unlabelled.
	Zone string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Progress receives one human-readable line per log interval while this
	// worker is rank 0; nil for none.
	Progress io.Writer
	// NoTensorBoard turns off the TensorBoard event files rank 0 writes under the
	// job's <out>/tb (trainer.TensorBoardDir).
	NoTensorBoard bool
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
	// CheckpointOnStop makes a worker that was rank 0 of the last generation it
	// trained in write a checkpoint of the last step it applied into the run
	// directory when Run's ctx ends, as the single-process trainer does on an
	// interrupt; it is not committed (stopCheckpoint). It is for a cluster stopped
	// as a whole with its coordinator (ringtrain local on SIGINT), whose rerun
	// resumes from the run directory: a worker that leaves a cluster that trains on
	// needs none.
	CheckpointOnStop bool
	// TLS holds the worker's certificate (ringtrain://worker/ID) and the CA
	// bundle: with it the peer server, ring links, lanes and probes are mutual TLS
	// and accept only workers of the current plan. Nil serves plain text. The
	// coordinator client carries its own (coordinator.ClientOptions.TLS).
	TLS *security.Store
	// ComputeDelay slows this worker down on purpose: each step's compute takes this
	// much longer (a wait before the gradients, counted as compute). It makes a
	// straggler for tests and drills; zero in production.
	ComputeDelay time.Duration
}

// Result is what a finished Run reports.
type Result struct {
	Step       int64     // steps applied: the job's steps when it finished, fewer when it stopped early
	StartStep  int64     // the step this worker began training the job at (Step when it had nothing to do)
	Loss       float64   // mean training loss of the last step this worker ran (NaN if none)
	ValLoss    float64   // last validation loss (rank 0 only; NaN if never evaluated)
	Checkpoint string    // last checkpoint written (rank 0 only)
	Generation uint64    // generation the job finished in
	Rank       int       // rank in that generation; -1 when the job had finished before this worker trained
	Params     []float32 // final parameter slab, owned by the caller (nil when Rank is -1)
	Elapsed    time.Duration
	Split      metrics.Split // where this worker's step time went, summed over its steps
	// Stopped names the rule that ended the job before its last step (max_time,
	// target_val_loss, patience), the same on every rank; "" when it ran to the end.
	Stopped trainer.StopReason
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
	audit   *auditLog  // nil unless Config.Audit is set
	plans   *planWatch // the newest plan, once Run watches them
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
	if cfg.TLS != nil {
		if who, want := cfg.TLS.Identity(), (security.Identity{Role: security.RoleWorker, ID: cfg.ID}); who != want {
			return nil, fmt.Errorf("%w: the certificate names %s, this worker is %s", ErrBadConfig, who, want)
		}
	}
	if cfg.Backend == nil {
		cfg.Backend = tensor.NewCPU()
	}
	if cfg.Device == "" {
		cfg.Device = cfg.Backend.Device()
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
// ctx ends (it leaves and returns ctx's error; with Config.CheckpointOnStop, rank 0
// first writes a checkpoint of its last step and returns, beside the error, a Result
// with that step and checkpoint: stopCheckpoint), or a fatal error (a bad job,
// diverged replicas: it reports the job FAILED, leaves and returns the error). A
// job that has already ended (job_end.go) makes it return at once without
// registering: a FINISHED job with a rank -1 Result, a FAILED one with
// ErrJobFailed. It blocks; every goroutine it starts has ended when it returns.
func (w *Worker) Run(ctx context.Context) (res *Result, err error) {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	svc := allreduce.NewService(allreduce.ServiceOptions{Member: w.cfg.ID, Logger: w.log, TLS: w.cfg.TLS, DataAddress: w.cfg.DataAddress})
	sopts := allreduce.ServerOptions()
	if w.cfg.TLS != nil {
		sopts = allreduce.SecureServerOptions(w.cfg.TLS, w.log)
	}
	srv := grpc.NewServer(sopts...)
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

	if res, err := w.endedJob(ctx, true); res != nil || err != nil {
		if res != nil {
			w.log.Info("the job has already finished: nothing to do", "step", res.Step, "checkpoint", res.Checkpoint)
		}
		return res, err
	}
	w.plans = newPlanWatch()
	lease, err := w.register(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped while registering: the coordinator may have applied the
			// registration before the answer was lost, so leave all the same.
			w.leave(ctx)
		}
		return nil, err
	}
	defer w.leave(ctx)
	tlsInfo := "off"
	if w.cfg.TLS != nil {
		tlsInfo = w.cfg.TLS.Identity().String()
	}
	w.log.Info("registered", "addr", w.addr, "lease", lease, "tls", tlsInfo)

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
	defer func() {
		if err != nil && parent.Err() != nil && job != nil && w.cfg.CheckpointOnStop {
			res = w.stopCheckpoint(job)
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
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := w.endedJob(sctx, false)
			scancel()
			switch {
			case res != nil:
				log.Info("the job has already finished: nothing to do", "step", res.Step, "checkpoint", res.Checkpoint)
				return res, nil
			case err != nil:
				log.Error("the job has failed: stopping", "err", err)
				return nil, err
			}
			log.Info("not a member of this plan: waiting", "state", plan.GetState(), "reason", plan.GetReason())
			continue
		}
		if job != nil && plan.GetJobVersion() != 0 && plan.GetJobVersion() != job.version {
			// The job was replaced: the old one's state, books and checkpoints are not
			// the new job's. Its generation was cancelled when this plan arrived.
			log.Warn("the job was replaced: dropping the old job's state", "old_job_version", job.version, "job_version", plan.GetJobVersion(), "step", job.tr.Step)
			w.closeMetrics(job)
			job = nil
		}
		if job == nil {
			if job, err = w.loadJob(ctx); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if isFatal(err) {
					log.Error("stopping", "err", err)
					w.reportFailure(ctx, plan.GetGeneration(), plan.GetStartStep(), err)
				}
				return nil, err
			}
			if v := plan.GetJobVersion(); v != 0 && job.version != v {
				// The job changed again between the plan and the read: a newer plan follows.
				log.Info("the job changed since this plan: waiting for the next", "job_version", job.version, "plan_job_version", v)
				w.closeMetrics(job)
				job = nil
				continue
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
			w.reportFailure(ctx, plan.GetGeneration(), job.tr.Step, err)
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
