package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/bench"
	"github.com/ringtrain/ringtrain/tensor"
)

// benchComputeCmds returns the compute benchmarks of `ringtrain bench`: gemm (matrix
// multiplication speed on the model's shapes) and train (training-step speed).
func benchComputeCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newBenchGemmCmd(g), newBenchTrainCmd(g)}
}

// setGemmKernel applies --kernel: the gemm micro-kernel the benchmark times.
func setGemmKernel(kernel string) error {
	if kernel == "" {
		return nil
	}
	if err := tensor.SetGemmKernel(kernel); err != nil {
		return usageError(fmt.Errorf("--kernel: %w", err))
	}
	return nil
}

func newBenchGemmCmd(_ *globals) *cobra.Command {
	var (
		o                              bench.GemmOptions
		sets, kernel, openblas, python string
	)
	cmd := &cobra.Command{
		Use:   "gemm",
		Short: "Measure matrix-multiplication GFLOP/s on the model's shapes, beside the machine's peak",
		Long: `Measures tensor.Gemm in GFLOP/s on the products of a training step (the tiny recipe's
and nanoGPT shakespeare-char's: forward NT, input-gradient NN and weight-gradient TN of
every linear layer) and on square products, beside gonum's pure-Go Sgemm and, with
--openblas, OpenBLAS through scripts/bench/openblas_gemm.py. Implementations are timed
interleaved, shape by shape, --reps times, and the best of each is printed: on a shared
machine the best is the least disturbed. The peak is the micro-kernel's own speed on
cache-resident data on --threads cores, measured in the same run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Shapes = nil
			for _, s := range strings.Split(sets, ",") {
				shapes, err := bench.GemmShapes(s)
				if err != nil {
					return usageError(fmt.Errorf("--sets: %w", err))
				}
				o.Shapes = append(o.Shapes, shapes...)
			}
			if o.Threads < 1 || o.Reps < 1 || o.Time <= 0 {
				return usageErrorf("--threads, --reps and --time must be positive")
			}
			if err := setGemmKernel(kernel); err != nil {
				return err
			}
			if openblas != "" {
				ob, err := bench.StartOpenBLAS(cmd.Context(), python, openblas, o.Threads)
				if err != nil {
					return fmt.Errorf("--openblas: %w", err)
				}
				defer ob.Close()
				o.OpenBLAS = ob
			}
			_, err := bench.Gemm(cmd.Context(), o, cmd.OutOrStdout())
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sets, "sets", "tiny,nanogpt,square", "shape sets, comma-separated: tiny, nanogpt, square")
	fl.IntVar(&o.Threads, "threads", runtime.NumCPU(), "threads (GOMAXPROCS, and OpenBLAS's threads)")
	fl.IntVar(&o.Reps, "reps", 3, "interleaved repetitions; the best is printed")
	fl.DurationVar(&o.Time, "time", 300*time.Millisecond, "time per measurement")
	fl.StringVar(&kernel, "kernel", "", "micro-kernel to use (default: the fastest this CPU runs)")
	fl.BoolVar(&o.NoGonum, "no-gonum", false, "leave gonum's Sgemm out")
	fl.StringVar(&openblas, "openblas", "", "also time OpenBLAS with this script (scripts/bench/openblas_gemm.py)")
	fl.StringVar(&python, "python", "/usr/bin/python3", "Python for --openblas")
	return cmd
}

func newBenchTrainCmd(_ *globals) *cobra.Command {
	var backend backendFlags
	var (
		o      bench.TrainOptions
		kernel string
		exact  bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Measure training speed (tokens/s, MFU) on random tokens",
		Long: `Builds a GPT-2 of the given shape in memory, feeds it random tokens, and times full
training steps (forward, backward, gradient clipping and AdamW, through the trainer)
after --warmup untimed ones. It prints tokens/s, ms/step, the model FLOP utilisation
((6N + 6·L·T·C) FLOPs per token over the peak measured in the same run with the gemm
micro-kernel), allocations per step and the peak resident memory (VmHWM). --cpuprofile
profiles the whole command.

The default shape is nanoGPT's shakespeare-char; the tiny recipe is
--layers 4 --heads 4 --embd 128 --seq 64 --batch 12 --vocab 67.

--exact compares instead the normal step with exact mode's (the gradient of each of
--streams streams converted to fixed point and summed as integers), alternating one
step of each on two copies of the model, and prints both ms/step and their ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Seq < 1 || o.Batch < 1 || o.Warmup < 0 || o.Steps < 1 || o.Threads < 1 {
				return usageErrorf("--seq, --batch, --steps and --threads must be positive and --warmup >= 0")
			}
			if err := setGemmKernel(kernel); err != nil {
				return err
			}
			be, err := backend.open()
			if err != nil {
				return err
			}
			o.Backend = be
			if exact {
				_, err := bench.TrainExact(cmd.Context(), o, cmd.OutOrStdout())
				return err
			}
			_, err = bench.Train(cmd.Context(), o, cmd.OutOrStdout())
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Model.Layers, "layers", 6, "transformer layers")
	fl.IntVar(&o.Model.Heads, "heads", 6, "attention heads")
	fl.IntVar(&o.Model.Embd, "embd", 384, "embedding width")
	fl.IntVar(&o.Model.VocabSize, "vocab", 65, "vocabulary size")
	fl.IntVar(&o.Seq, "seq", 256, "sequence length T (and the model's context)")
	fl.IntVar(&o.Batch, "batch", 8, "sequences per step")
	fl.IntVar(&o.Warmup, "warmup", 3, "untimed first steps")
	fl.IntVar(&o.Steps, "steps", 10, "timed steps")
	fl.IntVar(&o.Threads, "threads", runtime.NumCPU(), "threads (GOMAXPROCS)")
	fl.StringVar(&kernel, "kernel", "", "gemm micro-kernel to use (default: the fastest this CPU runs)")
	fl.DurationVar(&o.PeakTime, "peak-time", time.Second, "time to measure the peak for MFU")
	fl.Uint64Var(&o.Seed, "seed", 1337, "seed of the weights and tokens")
	fl.BoolVar(&exact, "exact", false, "compare the normal step with exact mode's, alternating")
	fl.IntVar(&o.Streams, "streams", 1, "with --exact: streams the batch is split over")
	backend.register(fl)
	return cmd
}
