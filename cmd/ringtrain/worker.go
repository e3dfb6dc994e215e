package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/metrics"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

func newWorkerCmd(g *globals) *cobra.Command {
	var backend backendFlags
	var (
		addrs              []string
		id, listen, advert string
		device             string
		zone               string
		ringTimeout        time.Duration
		metricsAddr        string
		auditPath          string
		tensorBoard        bool
		leaveExitCode      int
		dataPort           int
		tf                 tlsFlags
	)
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run one training worker of a cluster",
		Long: `Run one worker: it registers with the coordinator cluster, serves its peers (the ring
all-reduce) on --listen, and trains its share of the submitted job in every plan
generation it is a member of. It leaves the cluster and exits 0 when the job has
finished (at once, without registering, when it starts after the end), non-zero
with the reason when the job failed (it reports an error no retry can cure itself,
which fails the job for every worker), or on SIGINT/SIGTERM (a graceful leave: the
step in flight is abandoned, the worker tells the coordinator it is gone so the
others continue at once in a new generation, and it exits 0, or --leave-exit-code:
a Kubernetes Job gives 143, so that a pod stopped before the job is finished is not
counted as done but replaced at its index). The job's dataset directory must be
readable at the same path on
every worker; checkpoints are written by rank 0 under the job's run directory.

Every flag can also be given as RINGTRAIN_<FLAG> in the environment; flags win. In a
Kubernetes pod the default --id is POD_NAME (in an Indexed Job the host name
<job>-<index>, which a replacement pod keeps), and MASTER_ADDR:MASTER_PORT (as a
PyTorchJob sets them) stands for --coordinators; see docs/kubernetes.md.

With --tls-dir (a certificate ringtrain://worker/<id>, see 'ringtrain certs' and
docs/security.md) every connection is mutual TLS, ring links and lanes are accepted
only from the plan's members, by certificate, and the default --id is the one the
certificate names (a certificate issued per pod, as cert-manager's csi-driver does,
decides the id). Without it the worker serves plain text on loopback addresses only,
unless --insecure.`,
		Example: `  ringtrain worker --id w0 --coordinators host0:7001,host1:7001,host2:7001 --listen :7100 --advertise host3:7100 \
      --data-port 7101 --tls-dir /etc/ringtrain/tls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if leaveExitCode < 0 || leaveExitCode > 255 {
				return usageErrorf("--leave-exit-code %d: want an exit status in [0, 255]", leaveExitCode)
			}
			be, err := backend.open()
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			log = log.With("ordinal", g.ident.Ordinal)
			dataAddr, err := dataAddress(listen, dataPort)
			if err != nil {
				return err
			}
			creds, err := tf.serve(log, map[string]string{"--listen": listen, "--data-port": dataAddr})
			if err != nil {
				return err
			}
			if id, err = certifiedID(security.RoleWorker, id, g.given["id"], creds); err != nil {
				return err
			}
			log.Info("starting worker", "worker", id, "advertise", advert, "ordinal_from", orNone(g.ident.OrdinalFrom))
			cl, err := coordinator.NewClient(splitList(addrs), coordinator.ClientOptions{Logger: log, TLS: creds})
			if err != nil {
				return err
			}
			defer cl.Close()
			reg := newRegistry()
			wm, err := metrics.NewWorker(reg, id)
			if err != nil {
				return err
			}
			stop, err := serveMetrics(cmd, metricsAddr, reg, log)
			if err != nil {
				return err
			}
			defer stop()
			cfg := worker.Config{ID: id, Listen: listen, Advertise: advert, Coordinators: cl,
				Backend: be, Device: device, Zone: zone, Logger: log, Progress: cmd.OutOrStdout(), RingTimeout: ringTimeout, Metrics: wm,
				NoTensorBoard: !tensorBoard, TLS: creds, DataAddress: dataAddr}
			if auditPath != "" {
				f, err := os.OpenFile(auditPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
				if err != nil {
					return fmt.Errorf("--audit-log: %w", err)
				}
				defer f.Close()
				cfg.Audit = f
			}
			w, err := worker.New(cfg)
			if err != nil {
				return err
			}
			res, err := w.Run(cmd.Context())
			if err != nil {
				if errors.Is(err, cmd.Context().Err()) {
					log.Info("stopped", "reason", err)
					if leaveExitCode != 0 {
						return &exitError{code: leaveExitCode, err: fmt.Errorf("stopped before the job finished (--leave-exit-code %d): %w", leaveExitCode, err)}
					}
					return nil
				}
				return err
			}
			printDone(cmd, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&addrs, "coordinators", nil, "coordinator gRPC addresses, comma separated")
	requireFlags(cmd, "coordinators")
	f.StringVar(&id, "id", host, "stable worker id; default: the host name")
	f.StringVar(&listen, "listen", ":7100", "peer gRPC listen address")
	f.StringVar(&advert, "advertise", "", "host:port other workers dial (required when --listen has no host)")
	f.StringVar(&device, "device", "", "device name reported to the coordinator instead of the backend's own (\"cpu\", \"cuda:0 NVIDIA H200\")")
	f.StringVar(&zone, "zone", "", "topology label (e.g. the node's topology.kubernetes.io/zone): the ring keeps a zone's workers adjacent")
	backend.register(f)
	f.DurationVar(&ringTimeout, "ring-timeout", 0, "how long a ring operation waits for a silent neighbour (0: 5s)")
	f.StringVar(&metricsAddr, "metrics-addr", "", metricsAddrHelp)
	f.StringVar(&auditPath, "audit-log", "", "append an audit of every contribution and applied update to this file (check with 'ringtrain audit')")
	f.BoolVar(&tensorBoard, "tensorboard", true, "while rank 0, "+tensorBoardHelp)
	f.IntVar(&dataPort, "data-port", 0, "fixed TCP port of the all-reduce lanes, on --listen's host (0: a free port per link host; give one so a firewall or network policy can name it)")
	addTLSFlags(cmd, &tf, serveInsecureHelp)
	f.IntVar(&leaveExitCode, "leave-exit-code", 0, "exit status after a graceful leave on SIGINT/SIGTERM before the job is finished (a Kubernetes Job: 143, so the pod is replaced)")
	return cmd
}

func newAuditCmd() *cobra.Command {
	var streams int
	cmd := &cobra.Command{
		Use:   "audit --streams M LOG...",
		Short: "Check that a run's audit logs prove exactly-once training",
		Long: `Read the audit logs the workers of one job wrote with --audit-log (all of them, across
restarts) and check that every worker finished with the same weights, that those weights
descend from the initial ones through one applied update per step, and that every update
summed the gradient of each of the job's M streams exactly once. Prints the steps,
generations, recomputed steps and lost or repeated samples; exits non-zero on a violation.`,
		Example: `  ringtrain audit --streams 12 run/audit/*.jsonl`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if streams <= 0 {
				return usageErrorf("--streams: must be the job's stream count (> 0), got %d", streams)
			}
			recs, err := worker.ReadAudit(args...)
			if err != nil {
				return err
			}
			rep, err := worker.VerifyAudit(recs, streams)
			fmt.Fprintf(cmd.OutOrStdout(), "steps %d  generations %d  workers finished %d  recomputed %d  lost %d  repeated %d  final checksum %016x\n",
				rep.Steps, rep.Generations, rep.Workers, rep.Recomputed, rep.Lost, rep.Repeated, rep.Final)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "audit: ok")
			return nil
		},
	}
	cmd.Flags().IntVar(&streams, "streams", 0, "the job's number of data streams")
	requireFlags(cmd, "streams")
	return cmd
}

func newSubmitCmd(g *globals) *cobra.Command {
	var (
		addrs                  []string
		minWorkers, maxWorkers int
		replace, exact         bool
		wait, follow           bool
		interval               time.Duration
		timeout                time.Duration
		tf                     tlsFlags
	)
	cmd := &cobra.Command{
		Use:   "submit JOB.yaml",
		Short: "Submit a training job to a running coordinator cluster",
		Long: `Read a job spec YAML (the format of 'ringtrain train --config') and install it on the
coordinator cluster. Submitting the same job again is accepted and changes nothing;
a different one is refused unless --replace (which starts it from scratch). The
same job with --replace runs again a job that failed, from its last committed
checkpoint.

--wait blocks until the job ends: exit status 0 when it finished (the final
checkpoint is printed), 1 with the reason when it failed, 130 when interrupted
(the job goes on). --follow waits too, printing a line (step, loss, workers) at
every change. --timeout bounds the submission and each status read.`,
		Example: `  ringtrain submit job.yaml --coordinators host0:7001,host1:7001,host2:7001 --min-workers 3 --follow`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usageErrorf("--interval %v: must be positive", interval)
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			spec, err := trainer.LoadSpec(args[0])
			if err != nil {
				return err
			}
			spec.Exact = spec.Exact || exact
			// epochs: the coordinator needs the job's steps, counted from the dataset.
			if spec, err = trainer.ResolveEpochs(spec); err != nil {
				return err
			}
			job, err := jobspec.Encode(spec, minWorkers, maxWorkers)
			if err != nil {
				return err
			}
			creds, err := tf.load(log)
			if err != nil {
				return err
			}
			cl, err := coordinator.NewClient(splitList(addrs), coordinator.ClientOptions{Logger: log, TLS: creds})
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := cl.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job, Replace: replace}); err != nil {
				if cmd.Context().Err() != nil {
					return errWaitInterrupted()
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "submitted %s: %d steps over %d streams\n", args[0], spec.Steps, spec.Streams)
			if !wait && !follow {
				return nil
			}
			p := poller{cl: cl, interval: interval, timeout: timeout, warn: g.notes(cmd, slog.LevelWarn)}
			return waitJob(cmd.Context(), p, job, cmd.OutOrStdout(), follow)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&addrs, "coordinators", nil, "coordinator gRPC addresses, comma separated")
	requireFlags(cmd, "coordinators")
	f.IntVar(&minWorkers, "min-workers", 1, "the job waits until this many workers are registered")
	f.IntVar(&maxWorkers, "max-workers", 0, "at most this many workers train (0: one per stream)")
	f.BoolVar(&exact, "exact", false, "run the job in exact mode (as exact: true in JOB.yaml): weights bit-identical for any number of workers")
	f.BoolVar(&replace, "replace", false, "replace a different job already submitted (its progress is dropped), or run this failed job again")
	f.BoolVar(&wait, "wait", false, "wait until the job ends: exit 0 when it finished, non-zero with the reason when it failed")
	f.BoolVar(&follow, "follow", false, "wait, printing the step, loss and workers as the job goes")
	f.DurationVar(&interval, "interval", time.Second, "with --wait or --follow: how often to read the job's state")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long (with --wait: on the submission and each status read)")
	cmd.Flags().StringVar(&tf.dir, "tls-dir", "", tlsDirHelp+"; submitting needs an admin certificate (ringtrain://admin/NAME)")
	cmd.Flags().BoolVar(&tf.insecure, "insecure", false, clientInsecureHelp)
	return cmd
}

// dataAddress is the lanes' listen address for --data-port on --listen's host
// ("" for a free port per link).
func dataAddress(listen string, port int) (string, error) {
	if port == 0 {
		return "", nil
	}
	if port < 0 || port > 65535 {
		return "", usageErrorf("--data-port %d: want a TCP port in [1, 65535] (0: any)", port)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", usageErrorf("--listen %q: %v", listen, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// printDone prints the summary line of a finished distributed run, then where this
// worker's step time went. The weights digest is the same on every rank of a
// healthy run.
func printDone(cmd *cobra.Command, res *worker.Result) {
	if res.Rank < 0 {
		early := ""
		if res.Stopped != "" {
			early = fmt.Sprintf(" (stopped early: %s)", stopReasonText(string(res.Stopped)))
		}
		fmt.Fprintf(cmd.OutOrStdout(), "done: the job had already finished at step %d%s; checkpoint %s\n", res.Step, early, orNone(res.Checkpoint))
		return
	}
	fmt.Fprintf(cmd.OutOrStdout(), "done: step %d, train loss %.4f, %s, rank %d of generation %d in %s; weights %s; checkpoint %s\n",
		res.Step, res.Loss, valLossText(res.ValLoss), res.Rank, res.Generation, res.Elapsed.Round(time.Second), weightsDigest(res.Params), orNone(res.Checkpoint))
	if res.Stopped != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "stopped early by %s at step %d\n", res.Stopped, res.Step)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "rank %d %s\n", res.Rank, res.Split)
}

// weightsDigest is the first 16 hex digits of the sha256 of a parameter slab's bits
// (little-endian float32).
func weightsDigest(params []float32) string {
	h := sha256.New()
	var buf [4096]byte
	for len(params) > 0 {
		n := min(len(params), len(buf)/4)
		for i, v := range params[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf[:4*n])
		params = params[n:]
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
