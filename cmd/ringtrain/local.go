package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

func newLocalCmd(g *globals) *cobra.Command {
	var backend backendFlags
	f := &specFlags{}
	var (
		dir          string
		sample       int
		noResume     bool
		workers      int
		coordinators int
		metricsAddr  string
		tensorBoard  bool
		printConfig  bool
	)
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Train a small GPT on the shipped tiny shakespeare corpus, end to end",
		Long: `Prepare the shipped tiny shakespeare corpus (character level), train a small GPT on
it, write a checkpoint and print a generated sample. With no flags it trains the
4-layer, 128-wide recipe for 600 steps, about a minute on 2 cores. Every training
flag of 'ringtrain train' applies; --data trains on another prepared dataset.

The training runs on a whole cluster inside this process: an embedded coordinator
(1 or 3 Raft replicas, their data in a fresh directory under --dir) and --workers
workers that all-reduce their gradients over real loopback gRPC, with mutual TLS
on every connection from a CA made in memory, exactly as separate 'ringtrain
coordinator' and 'ringtrain worker' processes with --tls-dir do. Unless
--streams is given, the batch is split into one data stream per worker. Running it
again resumes from the newest checkpoint in the run directory. 'ringtrain train'
is the single-process trainer without a cluster.

SIGINT or SIGTERM (Ctrl-C) stops the workers, rank 0 writing a checkpoint of the
last completed step first, and exits with status 130; rerun to resume. Exit status:
0 done, 1 failed, 2 bad flags or values, 130 interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			spec, err := f.resolve(cmd)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("out") {
				spec.Out = filepath.Join(dir, "run")
			}
			shipped := spec.Data == ""
			if shipped {
				spec.Data = filepath.Join(dir, "data")
			}
			if workers < 1 {
				return usageErrorf("--workers %d: must be >= 1", workers)
			}
			if coordinators != 1 && coordinators != 3 {
				return usageErrorf("--coordinators %d: must be 1 or 3", coordinators)
			}
			// One stream per worker unless --streams says otherwise: each worker then
			// computes one micro-batch of batch/workers sequences per step.
			if !cmd.Flags().Changed("streams") && f.config == "" {
				if f.batch%workers != 0 {
					return usageErrorf("--batch %d must be a multiple of --workers %d", f.batch, workers)
				}
				spec.Streams, spec.MicroBatch = workers, f.batch/workers
			}
			if spec, err = f.initShape(cmd, spec); err != nil {
				return err
			}
			if printConfig {
				return printSpec(cmd.OutOrStdout(), spec)
			}
			if shipped {
				if err := prepareShipped(cmd, dir, spec.Data); err != nil {
					return err
				}
			}
			if spec, err = trainer.ResolveEpochs(spec); err != nil {
				return specError(err)
			}
			if noResume {
				if err := refuseResume(spec.Out); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "training %d-layer %d-wide GPT for %d steps on %s with %d worker(s) and %d coordinator replica(s); checkpoints in %s\n",
				spec.Model.Layers, spec.Model.Embd, spec.Steps, spec.Data, workers, coordinators, spec.Out)
			be, err := backend.open()
			if err != nil {
				return err
			}
			ckpt, err := runLocalCluster(cmd, g, log, spec, be, dir, workers, coordinators, metricsAddr, !tensorBoard)
			if err != nil {
				return err
			}
			if sample <= 0 || ckpt == "" {
				return nil
			}
			ck, err := model.LoadCheckpoint(ckpt)
			if err != nil {
				return err
			}
			if why := noSample(ck, ckpt); why != "" {
				fmt.Fprintln(cmd.OutOrStdout(), why)
				return nil
			}
			tok, err := checkpointTokenizer(ck, "")
			if err != nil {
				return err
			}
			m, err := model.New(ck.Config, be)
			if err != nil {
				return err
			}
			copy(m.Params.Slab, ck.Params)
			fmt.Fprintln(cmd.OutOrStdout(), "--- sample ---")
			return generate(cmd, g.notes(cmd, slog.LevelInfo), m, tok, "ROMEO:", model.GenerateOptions{MaxTokens: sample, Temperature: 0.8, TopK: 40, Seed: 1, StopAtEOT: true}, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	backend.register(cmd.Flags())
	f.spec.Steps = 600
	f.spec.EvalInterval = 200
	f.spec.CheckpointInterval = 200
	f.spec.LogInterval = 25
	cmd.Flags().Lookup("steps").DefValue = "600"
	cmd.Flags().Lookup("eval-interval").DefValue = "200"
	cmd.Flags().Lookup("checkpoint-interval").DefValue = "200"
	cmd.Flags().Lookup("log-interval").DefValue = "25"
	// --out, --data and --streams default to values that depend on --dir and
	// --workers: the help says so in words (an empty or zero DefValue prints none).
	for _, d := range []struct{ name, usage, zero string }{
		{"out", "run directory for checkpoints and metrics.jsonl (default: <dir>/run)", ""},
		{"data", "prepared dataset directory, made by 'ringtrain prepare' (default: the shipped tiny shakespeare corpus, prepared into <dir>/data)", ""},
		{"streams", "data streams M; the batch is split evenly over them (default: one per worker)", "0"},
	} {
		fl := cmd.Flags().Lookup(d.name)
		fl.Usage, fl.DefValue = d.usage, d.zero
	}
	cmd.Flags().StringVar(&dir, "dir", "ringtrain-local", "working directory for the prepared corpus and the run")
	cmd.Flags().IntVar(&sample, "sample-tokens", 300, "tokens to generate at the end from \"ROMEO:\" (0: none; none after a reward model or a chat-tuned model)")
	cmd.Flags().BoolVar(&noResume, "no-resume", false, "refuse to start when the run directory already holds checkpoints (instead of resuming from the newest)")
	cmd.Flags().IntVar(&workers, "workers", defaultLocalWorkers, "training workers in this process (each a ring member over loopback gRPC)")
	cmd.Flags().IntVar(&coordinators, "coordinators", 1, "embedded coordinator replicas: 1 or 3")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", metricsAddrHelp+"; one registry for the process, labelled by worker and replica")
	cmd.Flags().BoolVar(&tensorBoard, "tensorboard", true, tensorBoardHelp)
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the job spec these flags and --config make (the streams split over --workers, --out and --data under --dir), as job YAML, and exit without preparing anything")
	return cmd
}

// prepareShipped writes the embedded corpus under dir and prepares it, character level,
// into data unless a dataset is already there.
func prepareShipped(cmd *cobra.Command, dir, data string) error {
	if _, err := os.Stat(filepath.Join(data, shard.ManifestFile)); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	text := filepath.Join(dir, "tinyshakespeare.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare), 0o644); err != nil {
		return err
	}
	m, err := shard.PrepareText(cmd.Context(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: data, Overwrite: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "prepared the shipped tiny shakespeare corpus: %d characters of vocabulary, %d train shards in %s\n",
		m.Tokenizer.VocabSize, len(m.Train), data)
	return nil
}

// defaultLocalWorkers is the number of workers 'ringtrain local' starts by default.
const defaultLocalWorkers = 2

// runLocalCluster runs spec on an embedded cluster (localcluster.Run): coordinators
// Raft replicas with their state in a fresh directory under dir (removed at the end),
// and n workers, all on loopback. It prints rank 0's summary and every other rank's
// time split, and returns the last checkpoint rank 0 wrote. With metricsAddr set,
// every replica's and worker's metrics are served there from one registry; rank 0
// writes TensorBoard event files unless noTensorBoard.
func runLocalCluster(cmd *cobra.Command, g *globals, log *slog.Logger, spec trainer.Spec, be tensor.Backend, dir string, n, coordinators int, metricsAddr string, noTensorBoard bool) (string, error) {
	reg := newRegistry()
	stop, err := serveMetrics(cmd, metricsAddr, reg, log)
	if err != nil {
		return "", err
	}
	defer stop()
	quiet := quietLogger(log)
	res, err := localcluster.Run(cmd.Context(), localcluster.Options{
		Spec: spec, Workers: n, Coordinators: coordinators, Dir: dir,
		Replica:  coordinator.Config{Logger: quiet, Settle: 100 * time.Millisecond},
		Client:   coordinator.ClientOptions{Logger: quiet},
		Worker:   worker.Config{Logger: log, Progress: cmd.OutOrStdout(), NoTensorBoard: noTensorBoard, Backend: be},
		Registry: reg,
	})
	if err != nil {
		if interrupted(cmd, err) {
			return "", interruptedLocal(res, spec.Out)
		}
		return "", specError(err)
	}
	if r := res.Workers[0]; r.StartStep >= spec.Steps {
		printNothingToDo(cmd.OutOrStdout(), r.Step, spec.Steps, r.Checkpoint)
		return r.Checkpoint, nil
	}
	// Rank 0's summary, then the other ranks' time splits.
	printDone(cmd, res.Workers[0])
	for _, r := range res.Workers[1:] {
		fmt.Fprintf(cmd.OutOrStdout(), "rank %d %s\n", r.Rank, r.Split)
	}
	return res.Workers[0].Checkpoint, nil
}

// noSample says why local prints no continuation of "ROMEO:" after training ck (in
// directory dir), or returns "" when it does: a reward model writes no text, and a
// chat-tuned model answers prompts in its template, not raw text.
func noSample(ck *model.Checkpoint, dir string) string {
	switch {
	case ck.Config.NumLabels != 0:
		return fmt.Sprintf("no sample from a reward model: score answers with 'ringtrain score --checkpoint %s --in ROWS'", dir)
	case ck.Trainer.ChatTemplate != "":
		return fmt.Sprintf("no raw-text sample from a model tuned with the %s chat template: talk to it with 'ringtrain chat --checkpoint %s'", ck.Trainer.ChatTemplate, dir)
	}
	return ""
}
