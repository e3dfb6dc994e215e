package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

func newCoordinatorCmd(g *globals) *cobra.Command {
	var (
		cfg         coordinator.Config
		peers       string
		join        []string
		metricsAddr string
		tf          tlsFlags
		jobs        jobspec.Policy
	)
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run one replica of the Raft-replicated coordinator",
		Long: `Run one coordinator replica. Three (or five) replicas form a cluster, either from a
static peer list that every replica is given the same way (a Kubernetes StatefulSet:
--peers ringtrain-coordinator-0=ringtrain-coordinator-0.ringtrain-coordinator:7000,...)
or by joining a running replica (--join host:7001). With neither, the replica starts
a cluster of its own. Host names are resolved on every connection, so a replica
that comes back with a new IP is found again. SIGTERM hands leadership over and
stops cleanly; a restart on the same --data-dir recovers all committed state.

Every flag can also be given as RINGTRAIN_<FLAG> in the environment
(RINGTRAIN_PEERS, RINGTRAIN_DATA_DIR, ...); flags win. In a Kubernetes pod the
default --id is POD_NAME (see docs/kubernetes.md).

With --tls-dir (a certificate ringtrain://coordinator/<id>, see 'ringtrain certs'
and docs/security.md) the gRPC service and Raft are mutual TLS: Raft admits only
coordinator certificates, and each call is authorized by the caller's certificate;
the default --id is the one the certificate names. Without it the replica serves
plain text on loopback addresses only, unless --insecure.`,
		Example: `  ringtrain coordinator --id c0 --data-dir /var/lib/ringtrain --raft-addr :7000 --grpc-addr :7001 \
      --peers c0=host0:7000,c1=host1:7000,c2=host2:7000 --tls-dir /etc/ringtrain/tls
  ringtrain coordinator --id c3 --data-dir /var/lib/ringtrain --join host0:7001 --tls-dir /etc/ringtrain/tls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if cfg.Peers, err = coordinator.ParsePeers(peers); err != nil {
				return usageError(fmt.Errorf("--peers: %w", err))
			}
			cfg.Join = splitList(join)
			cfg.Logger = log.With("ordinal", g.ident.Ordinal)
			if cfg.TLS, err = tf.serve(cfg.Logger, map[string]string{"--raft-addr": cfg.RaftAddr, "--grpc-addr": cfg.GRPCAddr}); err != nil {
				return err
			}
			if cfg.ID, err = certifiedID(security.RoleCoordinator, cfg.ID, g.given["id"], cfg.TLS); err != nil {
				return err
			}
			if jobs.Limits.MaxParams <= 0 || jobs.Limits.MaxActivationBytes <= 0 {
				return usageErrorf("--max-params and --max-activation-bytes must be positive")
			}
			if jobs.DataRoot == "" {
				log.Warn("no --data-root: the paths of submitted jobs are not confined")
			} else if st, err := os.Stat(jobs.DataRoot); err != nil || !st.IsDir() {
				return fmt.Errorf("--data-root %q: not a directory", jobs.DataRoot)
			}
			cfg.Jobs = jobs
			node, err := coordinator.Start(cfg)
			if err != nil {
				return err
			}
			reg := newRegistry()
			if err := registerNode(reg, node); err != nil {
				node.Close()
				return err
			}
			stop, err := serveMetrics(cmd, metricsAddr, reg, log)
			if err != nil {
				node.Close()
				return err
			}
			defer stop()
			<-cmd.Context().Done()
			log.Info("shutting down")
			return node.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", host, "stable replica id (Raft server id); default: the host name")
	f.StringVar(&cfg.DataDir, "data-dir", "ringtrain-coordinator", "directory of the Raft log, stable store and snapshots")
	f.StringVar(&cfg.RaftAddr, "raft-addr", ":7000", "Raft listen address")
	f.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "Raft host:port other replicas dial (default: this replica's --peers entry)")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", ":7001", "gRPC listen address")
	f.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "gRPC host:port given to clients in leader hints (default: the Raft host with the gRPC port)")
	f.StringVar(&peers, "peers", "", "static cluster: id=host:port of every replica's Raft address, comma separated")
	f.StringSliceVar(&join, "join", nil, "gRPC addresses of running replicas to join through, comma separated")
	f.StringVar(&metricsAddr, "metrics-addr", "", metricsAddrHelp)
	f.DurationVar(&cfg.Lease, "lease", 10*time.Second, "worker lease: a worker that does not heartbeat for this long is removed")
	f.StringVar(&jobs.DataRoot, "data-root", "", "directory every path of a submitted job (data, out, init_from, a tokenizer file) must lie under; relative paths are resolved there (default: not confined)")
	f.Int64Var(&jobs.Limits.MaxParams, "max-params", model.DefaultLimits.MaxParams, "refuse jobs whose model has more parameters than this")
	f.Int64Var(&jobs.Limits.MaxActivationBytes, "max-activation-bytes", model.DefaultLimits.MaxActivationBytes, "refuse jobs whose activations for one micro-batch take more bytes than this")
	f.DurationVar(&cfg.Settle, "settle", 500*time.Millisecond, "membership changes within this window form one new generation")
	// Half of hashicorp/raft's LAN defaults: a killed leader is replaced (and writes
	// succeed again) in about 1 s, at most 2 s, on loopback.
	f.DurationVar(&cfg.Raft.HeartbeatTimeout, "raft-heartbeat-timeout", 500*time.Millisecond, "Raft heartbeat timeout: a follower that hears nothing from the leader for this long (randomised up to twice) starts an election")
	f.DurationVar(&cfg.Raft.ElectionTimeout, "raft-election-timeout", 500*time.Millisecond, "Raft election timeout")
	f.DurationVar(&cfg.Raft.LeaderLeaseTimeout, "raft-leader-lease-timeout", 250*time.Millisecond, "Raft leader lease: a leader that cannot reach a quorum for this long steps down (at most the heartbeat timeout)")
	addTLSFlags(cmd, &tf, serveInsecureHelp)
	cmd.AddCommand(newStatusCmd(g))
	return cmd
}

// newStatusCmd is "status": the cluster's state as the leader sees it.
func newStatusCmd(g *globals) *cobra.Command {
	var (
		addrs    []string
		asJSON   bool
		stale    bool
		watch    bool
		interval time.Duration
		timeout  time.Duration
		tf       tlsFlags
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the coordinator cluster: leader, replicas and their health, job, plan, progress",
		Long: `Show the leader, its term and commit index, every replica with its health, the job
and its state (running; finished, with its final checkpoint; failed, with the
reason), the current generation with its members and their streams, the committed
step and loss, and the last checkpoint. The state is read from the leader
(linearizable) unless --stale. --json prints the same as one JSON object: the job's
spec decoded, integers as numbers, states in lower case (job "running",
"finished", "failed"; plan "active", "waiting", "ended").

--watch reads the state every --interval and shows it again whenever it changed
(redrawn in place on a terminal), until the job ends or the command is
interrupted (exit status 130); --timeout then bounds each read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs = splitList(addrs)
			if len(addrs) == 0 {
				return usageErrorf("--coordinators: give at least one coordinator gRPC address")
			}
			if interval <= 0 {
				return usageErrorf("--interval %v: must be positive", interval)
			}
			creds, err := tf.load(nil)
			if err != nil {
				return err
			}
			cl, err := coordinator.NewClient(addrs, coordinator.ClientOptions{AttemptTimeout: min(timeout, 2*time.Second), TLS: creds})
			if err != nil {
				return err
			}
			defer cl.Close()
			render := func(ctx context.Context, w io.Writer, st *pb.StatusResponse) error {
				health := probeReplicas(ctx, st, creds)
				if asJSON {
					return printStatusJSON(w, st, health)
				}
				printStatus(w, st, health)
				return nil
			}
			if watch {
				p := poller{cl: cl, interval: interval, timeout: timeout, stale: stale, warn: g.notes(cmd, slog.LevelWarn)}
				return watchStatus(cmd.Context(), p, cmd.OutOrStdout(), render)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := cl.Status(ctx, stale)
			if err != nil {
				return err
			}
			return render(ctx, cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().StringSliceVar(&addrs, "coordinators", nil, "coordinator gRPC addresses, comma separated")
	requireFlags(cmd, "coordinators")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&stale, "stale", false, "accept any replica's local (possibly stale) state")
	cmd.Flags().BoolVar(&watch, "watch", false, "show the state again whenever it changes, until the job ends")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "with --watch: how often to read the state")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long (with --watch: on each read)")
	addTLSFlags(cmd, &tf, clientInsecureHelp)
	return cmd
}

// probeReplicas asks every replica of st with a known gRPC address for its health
// (one second each), by replica id, with the certificate creds (nil: plain text).
func probeReplicas(ctx context.Context, st *pb.StatusResponse, creds *security.Store) map[string]string {
	health := map[string]string{}
	for _, r := range st.GetReplicas() {
		if r.GetGrpcAddr() != "" {
			hctx, hcancel := context.WithTimeout(ctx, time.Second)
			health[r.GetId()] = coordinator.ProbeHealth(hctx, r.GetGrpcAddr(), creds)
			hcancel()
		}
	}
	return health
}

func splitList(items []string) []string {
	var out []string
	for _, it := range items {
		for s := range strings.SplitSeq(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func printStatus(w io.Writer, st *pb.StatusResponse, health map[string]string) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	s := st.GetState()
	fmt.Fprintf(tw, "leader\t%s (%s)\tterm %d\tcommit index %d\tanswered by %s\n",
		orNone(st.GetLeaderId()), orNone(st.GetLeaderAddr()), st.GetTerm(), st.GetCommitIndex(), st.GetReplicaId())
	fmt.Fprintln(tw, "replicas")
	for _, r := range st.GetReplicas() {
		role := r.GetSuffrage()
		if r.GetLeader() {
			role += ", leader"
		}
		fmt.Fprintf(tw, "  %s\t%s\traft %s\tgrpc %s\t%s\n", r.GetId(), role, r.GetRaftAddr(), orNone(r.GetGrpcAddr()), orNone(health[r.GetId()]))
	}
	if j := s.GetJob(); j != nil {
		fmt.Fprintf(tw, "job\tstreams %d\tworkers %d..%d\tsteps %d\tcheckpoint every %d\n",
			j.GetStreams(), max(j.GetMinWorkers(), 1), maxWorkers(j), j.GetSteps(), j.GetCheckpointInterval())
		fmt.Fprintf(tw, "state\t%s\n", jobStateLine(s))
	} else {
		fmt.Fprintln(tw, "job\tnone submitted")
	}
	if p := s.GetPlan(); p != nil {
		state := strings.TrimPrefix(p.GetState().String(), "PLAN_STATE_")
		fmt.Fprintf(tw, "plan\tgeneration %d\t%s\tstart step %d\t%s\n", p.GetGeneration(), state, p.GetStartStep(), p.GetReason())
		for r, wk := range p.GetWorkers() {
			zone := ""
			if wk.GetZone() != "" {
				zone = "\tzone " + wk.GetZone()
			}
			fmt.Fprintf(tw, "  rank %d\t%s\t%s\t%s\tstreams %v%s\n", r, wk.GetId(), wk.GetAddress(), orNone(wk.GetDevice()), coordinator.StreamsOf(p, wk.GetId()), zone)
		}
		if len(p.GetStandby()) > 0 {
			fmt.Fprintf(tw, "standby\t%s\n", strings.Join(p.GetStandby(), ", "))
		}
	} else {
		fmt.Fprintln(tw, "plan\tnone yet")
	}
	fmt.Fprintf(tw, "workers\t%d registered\n", len(s.GetWorkers()))
	if pr := s.GetProgress(); pr != nil {
		fmt.Fprintf(tw, "progress\tstep %d\tloss %.4f\ttokens %d\n", pr.GetStep(), pr.GetLoss(), pr.GetTokens())
		printStragglers(tw, pr)
	} else {
		fmt.Fprintln(tw, "progress\tnone")
	}
	if cks := s.GetCheckpoints(); len(cks) > 0 {
		c := cks[len(cks)-1]
		fmt.Fprintf(tw, "checkpoint\tstep %d\t%s\tsha256 %s\n", c.GetStep(), c.GetLocation(), c.GetSha256())
	} else {
		fmt.Fprintln(tw, "checkpoint\tnone")
	}
}

// printStragglers prints the slowest rank of the progress report and how long
// the others waited for it per step (with two ranks or more), then every rank's
// step times: means over each rank's last steps (up to 20).
func printStragglers(w io.Writer, pr *pb.Progress) {
	s := coordinator.FindStraggler(pr.GetRanks())
	if s.Slowest == nil {
		return
	}
	ms := func(v float64) string { return fmt.Sprintf("%.1f ms", 1e3*v) }
	if len(pr.GetRanks()) > 1 {
		fmt.Fprintf(w, "slowest\trank %d (%s)\tcompute %s/step\tthe others waited %s/step for it\n",
			s.Slowest.GetRank(), s.Slowest.GetWorkerId(), ms(s.Slowest.GetComputeS()), ms(s.OthersWaitS))
	}
	for _, r := range pr.GetRanks() {
		fmt.Fprintf(w, "  rank %d\t%s\tcompute %s\twait %s\n", r.GetRank(), r.GetWorkerId(), ms(r.GetComputeS()), ms(r.GetWaitS()))
	}
}

func maxWorkers(j *pb.JobSpec) int32 {
	if j.GetMaxWorkers() == 0 || j.GetMaxWorkers() > j.GetStreams() {
		return j.GetStreams()
	}
	return j.GetMaxWorkers()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
