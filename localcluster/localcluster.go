package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/metrics"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

// ErrBadOptions: Options that Run refuses (the message names the field).
var ErrBadOptions = errors.New("localcluster: bad options")

// submitTimeout bounds the job's submission, leader election included.
const submitTimeout = 30 * time.Second

// Options configure Run.
type Options struct {
	// Spec is the job. It is submitted for exactly Workers workers (min and max).
	Spec trainer.Spec
	// Workers is how many workers train it (>= 1), named w0, w1, ...
	Workers int
	// Coordinators is how many Raft replicas hold the job (0 means 1), named c0, c1,
	// ...; more than one form a static cluster.
	Coordinators int
	// Dir is where the replicas keep their Raft state: a fresh directory under Dir
	// (Dir is created when missing), removed when Run returns. It holds nothing of the
	// job, whose output goes to Spec.Out.
	Dir string

	// Replica is the template of every replica's coordinator.Config. Run sets ID,
	// DataDir, RaftAddr, GRPCAddr and Peers; each replica's records carry its ID under
	// the key "replica" (the coordinator adds it). Nil Logger discards the replicas'
	// logs. Other zero fields keep the coordinator's defaults.
	Replica coordinator.Config
	// Client is the options of every coordinator client: the one that submits the job
	// and one per worker. ClientID must be empty (each client draws its own); nil
	// Logger discards the clients' logs.
	Client coordinator.ClientOptions
	// Worker is the template of every worker's worker.Config. Run sets ID,
	// Coordinators, CheckpointOnStop (the whole cluster stops together) and, with
	// Registry set, Metrics. The fields that name one worker's endpoints and files
	// (Listen, Listener, Advertise, Audit) must be zero: each worker serves its peers
	// on its own loopback port.
	Worker worker.Config
	// Registry, when set, receives every replica's gauges (labelled by replica) and
	// every worker's instruments (labelled by worker).
	Registry prometheus.Registerer
	// PlainText turns off TLS. By default Run makes an ephemeral CA in memory and
	// gives every replica (ringtrain://coordinator/cN), worker (worker/wN) and the
	// submitting client (admin/local) a certificate of it, so that every channel
	// runs mutual TLS as a deployed cluster does.
	PlainText bool
}

// Result is what Run reports of a finished job.
type Result struct {
	// Workers are the workers' results sorted by rank; a worker that found the job
	// already finished has rank -1 and comes first.
	Workers []*worker.Result
	// State is the coordinator state the leading replica held once every worker had
	// finished: the job, the last plan, the committed progress and checkpoints. Nil
	// when no replica led at that moment.
	State *pb.CoordinatorState
}

func (o *Options) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, args...))
	}
	switch {
	case o.Workers < 1:
		return bad("Workers %d: must be >= 1", o.Workers)
	case o.Coordinators < 0:
		return bad("Coordinators %d: must be >= 0 (0: one replica)", o.Coordinators)
	case o.Client.ClientID != "":
		return bad("Client.ClientID %q: must be empty (every client draws its own)", o.Client.ClientID)
	case o.Worker.Listen != "" || o.Worker.Listener != nil || o.Worker.Advertise != "":
		return bad("Worker.Listen, Listener and Advertise must be empty (every worker binds its own loopback port)")
	case o.Worker.Audit != nil:
		return bad("Worker.Audit must be nil (an audit log is one worker's)")
	case o.Replica.TLS != nil || o.Client.TLS != nil || o.Worker.TLS != nil:
		return bad("Replica.TLS, Client.TLS and Worker.TLS must be nil (Run issues every process its certificate)")
	}
	return nil
}

// Run starts the replicas, submits Spec, runs the workers until every one has
// finished, and stops everything before it returns. It blocks for the whole job.
//
// When ctx ends first, the workers stop as on SIGTERM, except that the one that was
// rank 0 writes a checkpoint of the last step it applied before it leaves (as
// `ringtrain train` does on an interrupt; worker.Config.CheckpointOnStop, which Run
// sets): Run then returns the workers' errors and, beside them, a Result whose
// Workers hold the results the stopped workers gave (rank 0's with the step and
// that checkpoint; none when it had not trained a step). A rerun of the same Spec
// resumes from that checkpoint.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	discard := slog.New(slog.DiscardHandler)
	if o.Replica.Jobs == nil {
		o.Replica.Jobs = jobspec.Policy{} // default limits; paths are the caller's own
	}
	if o.Replica.Logger == nil {
		o.Replica.Logger = discard
	}
	if o.Client.Logger == nil {
		o.Client.Logger = discard
	}
	coordinators := max(o.Coordinators, 1)
	n := o.Workers
	// issue returns the certificate of one process, nil without TLS.
	issue := func(role security.Role, id string) (*security.Store, error) { return nil, nil }
	if !o.PlainText {
		ca, err := security.NewCA("ringtrain local", 7*24*time.Hour)
		if err != nil {
			return nil, err
		}
		issue = func(role security.Role, id string) (*security.Store, error) {
			return ca.Store(security.Identity{Role: role, ID: id}, 7*24*time.Hour)
		}
	}

	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	stateDir, err := os.MkdirTemp(o.Dir, "coordinator-")
	if err != nil {
		return nil, fmt.Errorf("coordinator data: %w", err)
	}
	defer os.RemoveAll(stateDir)

	// Static peers need their Raft ports before any replica starts: reserve them.
	var peers []coordinator.Peer
	if coordinators > 1 {
		for i := range coordinators {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			peers = append(peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i), Addr: l.Addr().String()})
			l.Close()
		}
	}
	var (
		nodes []*coordinator.Node
		addrs []string
	)
	for i := range coordinators {
		cfg := o.Replica
		cfg.ID = fmt.Sprintf("c%d", i)
		cfg.DataDir = filepath.Join(stateDir, cfg.ID)
		cfg.RaftAddr, cfg.GRPCAddr, cfg.Peers = "127.0.0.1:0", "127.0.0.1:0", peers
		if peers != nil {
			cfg.RaftAddr = peers[i].Addr
		}
		if cfg.TLS, err = issue(security.RoleCoordinator, cfg.ID); err != nil {
			return nil, err
		}
		node, err := coordinator.Start(cfg)
		if err != nil {
			return nil, fmt.Errorf("coordinator replica %d: %w", i, err)
		}
		defer node.Close()
		if o.Registry != nil {
			if err := registerReplica(o.Registry, node); err != nil {
				return nil, err
			}
		}
		nodes = append(nodes, node)
		addrs = append(addrs, node.GRPCAddr())
	}
	newClient := func(role security.Role, id string) (*coordinator.Client, error) {
		opts := o.Client
		var err error
		if opts.TLS, err = issue(role, id); err != nil {
			return nil, err
		}
		return coordinator.NewClient(addrs, opts)
	}
	cl, err := newClient(security.RoleAdmin, "local")
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	job, err := jobspec.Encode(o.Spec, n, n)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, submitTimeout)
	err = cl.SubmitJob(sctx, &pb.SubmitJobRequest{Job: job})
	cancel()
	if err != nil {
		return nil, err
	}

	results := make([]*worker.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := o.Worker
		cfg.ID = fmt.Sprintf("w%d", i)
		wcl, err := newClient(security.RoleWorker, cfg.ID)
		if err != nil {
			return nil, err
		}
		defer wcl.Close()
		if cfg.TLS, err = issue(security.RoleWorker, cfg.ID); err != nil {
			return nil, err
		}
		cfg.Coordinators = wcl
		cfg.CheckpointOnStop = true
		if o.Registry != nil {
			if cfg.Metrics, err = metrics.NewWorker(o.Registry, cfg.ID); err != nil {
				return nil, err
			}
		}
		w, err := worker.New(cfg)
		if err != nil {
			return nil, err
		}
		wg.Go(func() { results[i], errs[i] = w.Run(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() == nil {
			return nil, err
		}
		stopped := &Result{}
		for _, r := range results {
			if r != nil {
				stopped.Workers = append(stopped.Workers, r)
			}
		}
		slices.SortFunc(stopped.Workers, func(a, b *worker.Result) int { return a.Rank - b.Rank })
		return stopped, err
	}
	slices.SortFunc(results, func(a, b *worker.Result) int { return a.Rank - b.Rank })
	res := &Result{Workers: results}
	for _, node := range nodes {
		if node.IsLeader() {
			res.State = node.State()
			break
		}
	}
	return res, nil
}

// registerReplica registers the gauges of a replica on reg.
func registerReplica(reg prometheus.Registerer, node *coordinator.Node) error {
	return metrics.RegisterCoordinator(reg, node.ID(), func() metrics.CoordinatorValues {
		return metrics.CoordinatorValues(node.Gauges())
	})
}
