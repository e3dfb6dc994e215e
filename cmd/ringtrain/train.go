package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/trainer"
)

// specFlags binds the job spec's fields to flags; a --config YAML file is read first
// and flags the user gave override it.
type specFlags struct {
	config string
	spec   trainer.Spec
	batch  int
	ppo    trainer.PPOSpec // the --ppo-* flags, applied over the spec's ppo section (ppo_flags.go)
}

func (f *specFlags) register(cmd *cobra.Command) {
	s := &f.spec
	*s = trainer.DefaultSpec()
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "job spec YAML file (flags override it)")
	fl.StringVar(&s.Data, "data", "", "prepared dataset directory (made by 'ringtrain prepare')")
	fl.StringVar(&s.Out, "out", s.Out, "run directory for checkpoints and metrics.jsonl")
	fl.StringVar(&s.InitFrom, "init-from", "", "start from this checkpoint or Hugging Face GPT-2 directory")
	fl.StringVar((*string)(&s.Objective), "objective", string(s.Objective), "training objective: causal, masked, sft (an SFT dataset under the default causal trains sft), reward (a reward model on preference pairs), dpo or ppo (RLHF against --reward-model)")
	fl.Float64Var(&s.Beta, "beta", 0, "dpo: inverse temperature of the DPO loss (0: 0.1); ppo: the KL penalty's coefficient (0: 0.05)")
	fl.Float64Var(&s.DPONLL, "dpo-nll", 0, "dpo: weight of an NLL term on the chosen answers (their mean per-token NLL) added to the DPO loss (0: plain DPO)")
	f.registerPPO(fl)
	fl.StringVar(&s.Tokenizer, "tokenizer", "", "tokenizer of a dataset without a tokenizer file (llm.c shards): gpt2 (the default there), byte, or a tokenizer file")
	fl.IntVar(&s.Model.Layers, "layers", s.Model.Layers, "transformer layers")
	fl.IntVar(&s.Model.Heads, "heads", s.Model.Heads, "attention heads")
	fl.IntVar(&s.Model.Embd, "embd", s.Model.Embd, "embedding width")
	fl.IntVar(&s.Model.MaxSeqLen, "context", 0, "model context (positions); 0 means --seq")
	fl.IntVar(&s.SeqLen, "seq", s.SeqLen, "sequence length T")
	fl.IntVar(&f.batch, "batch", s.MicroBatch, "global batch in sequences (streams x micro-batch)")
	fl.IntVar(&s.Streams, "streams", s.Streams, "data streams M; the batch is split evenly over them")
	fl.Int64Var(&s.Steps, "steps", s.Steps, "optimizer steps")
	fl.Int64Var(&s.Epochs, "epochs", 0, "passes over the train split instead of --steps (steps = epochs x steps per epoch)")
	fl.Uint64Var(&s.Seed, "seed", s.Seed, "seed of initialisation, data order and masking")
	fl.Float64Var(&s.LR, "lr", s.LR, "peak learning rate")
	fl.Float64Var(&s.MinLR, "min-lr", s.MinLR, "final learning rate of the cosine decay")
	fl.Int64Var(&s.WarmupSteps, "warmup", s.WarmupSteps, "linear warmup steps")
	fl.Float64Var(&s.AdamW.WeightDecay, "weight-decay", s.AdamW.WeightDecay, "AdamW decoupled weight decay (2-D weights only)")
	fl.Float64Var(&s.AdamW.Beta1, "beta1", s.AdamW.Beta1, "AdamW beta1")
	fl.Float64Var(&s.AdamW.Beta2, "beta2", s.AdamW.Beta2, "AdamW beta2")
	fl.Float64Var(&s.GradClip, "grad-clip", s.GradClip, "global gradient-norm clip (0 disables)")
	fl.Int64Var(&s.LogInterval, "log-interval", s.LogInterval, "steps between progress lines")
	fl.Int64Var(&s.EvalInterval, "eval-interval", s.EvalInterval, "steps between validation evaluations (0: at the end only)")
	fl.IntVar(&s.EvalBatches, "eval-batches", s.EvalBatches, "validation batches per evaluation")
	fl.Int64Var(&s.CheckpointInterval, "checkpoint-interval", s.CheckpointInterval, "steps between checkpoints (0: at the end only)")
	fl.IntVar(&s.KeepCheckpoints, "keep-checkpoints", s.KeepCheckpoints, "keep the newest N checkpoints and the best by validation loss (0: keep all)")
	fl.DurationVar((*time.Duration)(&s.MaxTime), "max-time", time.Duration(s.MaxTime), "stop after training this long (e.g. 90m), with a final checkpoint (0: no limit)")
	fl.Float64Var(&s.TargetValLoss, "target-val-loss", s.TargetValLoss, "stop once the validation loss is at most this (0: no target)")
	fl.IntVar(&s.Patience, "patience", s.Patience, "stop after this many evaluations without a better validation loss (0: never)")
	fl.BoolVar(&s.Exact, "exact", s.Exact, "sum each step's gradient in fixed point, so the weights are bit-identical for any number of workers and after faults (the ring carries int64)")
}

// resolve loads --config under the flags the user gave and splits --batch over streams.
// With --config, --streams alone splits the file's global batch (streams x micro_batch).
func (f *specFlags) resolve(cmd *cobra.Command) (trainer.Spec, error) {
	spec, batch := f.spec, f.batch
	if f.config != "" {
		fromFile, err := trainer.LoadSpec(f.config)
		if err != nil {
			return spec, specError(fmt.Errorf("--config: %w", err))
		}
		if !cmd.Flags().Changed("batch") {
			batch = fromFile.GlobalBatch()
		}
		if spec, err = overlayChanged(cmd, fromFile); err != nil {
			return spec, usageError(err)
		}
	}
	if f.config == "" || cmd.Flags().Changed("batch") || cmd.Flags().Changed("streams") {
		if spec.Streams < 1 || batch%spec.Streams != 0 {
			return spec, usageErrorf("--batch %d must be a positive multiple of --streams %d", batch, spec.Streams)
		}
		spec.MicroBatch = batch / spec.Streams
	}
	if cmd.Flags().Changed("epochs") && !cmd.Flags().Changed("steps") {
		spec.Steps = 0 // ResolveEpochs sets it
	}
	f.applyPPO(cmd, &spec)
	return spec, nil
}

// initShape gives spec the model shape of its init_from checkpoint when the command
// line sets none (--layers, --heads, --embd, --context) and no --config file does:
// fine-tuning keeps the shape of the model it starts from.
func (f *specFlags) initShape(cmd *cobra.Command, spec trainer.Spec) (trainer.Spec, error) {
	if spec.InitFrom == "" || f.config != "" || anyChanged(cmd, "layers", "heads", "embd", "context") {
		return spec, nil
	}
	c, err := model.ReadConfig(spec.InitFrom)
	if err != nil {
		return spec, usageError(fmt.Errorf("--init-from: %w", err))
	}
	spec.Model = c
	return spec, nil
}

// anyChanged reports whether any of the named flags was given on cmd's command line.
func anyChanged(cmd *cobra.Command, names ...string) bool {
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// overlayChanged returns base with the fields whose flags were given on cmd's command
// line set from them: the same flags are bound to base and the given values replayed.
func overlayChanged(cmd *cobra.Command, base trainer.Spec) (trainer.Spec, error) {
	replay := &specFlags{}
	tmp := &cobra.Command{}
	replay.register(tmp)
	replay.spec = base
	var err error
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if err == nil && tmp.Flags().Lookup(fl.Name) != nil {
			err = tmp.Flags().Set(fl.Name, fl.Value.String())
		}
	})
	return replay.spec, err
}

func newTrainCmd(g *globals) *cobra.Command {
	var backend backendFlags
	f := &specFlags{}
	var noResume, printConfig, tensorBoard bool
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a GPT in this process on a prepared dataset",
		Long: `Train a GPT in this process (no cluster) on a dataset made by 'ringtrain prepare'
or a directory of llm.c shards (read with the gpt2 tokenizer unless --tokenizer).
Checkpoints go to <out>/ckpt/step-NNNNNN, step metrics to <out>/metrics.jsonl and to
TensorBoard event files in <out>/tb (watch with 'tensorboard --logdir <out>/tb').
Running it again on the same --out resumes from the newest checkpoint and continues
bit-identically; on a finished run it says so and does nothing. It starts with a
banner (parameters, tokens per step, steps per epoch, epochs) and warns about a
warmup not shorter than the run and about more than 10 passes over the data.

SIGINT or SIGTERM (Ctrl-C) checkpoints the last completed step and exits with status
130; rerun to resume. Exit status: 0 done, 1 failed, 2 bad flags or values, 130
interrupted.`,
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
			if printConfig {
				return printSpec(cmd.OutOrStdout(), spec)
			}
			if spec.Data == "" {
				return usageErrorf("--data is required (a directory made by 'ringtrain prepare'), on the command line or as data: in --config")
			}
			if spec, err = f.initShape(cmd, spec); err != nil {
				return err
			}
			if spec, err = trainer.ResolveEpochs(spec); err != nil {
				return specError(err)
			}
			if noResume {
				if err := refuseResume(spec.Out); err != nil {
					return err
				}
			}
			be, err := backend.open()
			if err != nil {
				return err
			}
			_, err = runTraining(cmd, log, spec, be, noResume, !tensorBoard)
			return err
		},
	}
	f.register(cmd)
	backend.register(cmd.Flags())
	cmd.Flags().BoolVar(&noResume, "no-resume", false, "refuse to start when --out already holds checkpoints (instead of resuming from the newest)")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the job spec these flags and --config make, as job YAML, and exit")
	cmd.Flags().BoolVar(&tensorBoard, "tensorboard", true, tensorBoardHelp)
	return cmd
}

// printSpec writes spec as the job YAML that --config reads back to the same spec
// (docs/job-spec.md).
func printSpec(w io.Writer, spec trainer.Spec) error {
	var b bytes.Buffer
	b.WriteString("# ringtrain job spec: flags, --config and defaults (docs/job-spec.md)\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(spec); err != nil {
		return fmt.Errorf("print the job spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("print the job spec: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// tensorBoardHelp is the help of the --tensorboard flag of the commands that train.
const tensorBoardHelp = "write TensorBoard event files to <out>/tb ('tensorboard --logdir <out>/tb'); --tensorboard=false for none"

// runTraining runs spec in this process, printing the banner, progress and a summary
// line to the command's output, or that there is nothing to do. A signal's
// interruption is an interruptedError; an invalid spec is a usage error in flag terms.
func runTraining(cmd *cobra.Command, log *slog.Logger, spec trainer.Spec, be tensor.Backend, noResume, noTensorBoard bool) (*trainer.Result, error) {
	out := cmd.OutOrStdout()
	res, err := trainer.Run(cmd.Context(), spec, trainer.RunOptions{Logger: log, Progress: out, NoResume: noResume,
		NoTensorBoard: noTensorBoard, Backend: be})
	if err != nil {
		if interrupted(cmd, err) {
			return res, interruptedTrain(res)
		}
		return nil, specError(err)
	}
	if res.StartStep >= spec.Steps {
		printNothingToDo(out, res.Step, spec.Steps, res.Checkpoint)
		return res, nil
	}
	fmt.Fprintf(out, "done: step %d, train loss %.4f, %s, %.0f tok/s in %s; checkpoint %s\n",
		res.Step, res.TrainLoss, valLossText(res.ValLoss), res.TokensPerSec, res.Elapsed.Round(time.Second), res.Checkpoint)
	if res.Stopped != "" {
		fmt.Fprintf(out, "stopped early by %s at step %d of %d\n", res.Stopped, res.Step, spec.Steps)
	}
	return res, nil
}

// valLossText is a done line's validation part: "val loss 0.1234", or "no val loss"
// for the NaN of a run that never evaluated (--eval-batches 0, no validation split, or
// a worker other than rank 0).
func valLossText(v float64) string {
	if math.IsNaN(v) {
		return "no val loss"
	}
	return fmt.Sprintf("val loss %.4f", v)
}
