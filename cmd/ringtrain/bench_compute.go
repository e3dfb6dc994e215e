package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/trainer"
)

// benchComputeCmds returns the compute benchmarks of `ringtrain bench`: gemm (matrix
// multiplication speed on the model's shapes) and train (training-step speed).
func benchComputeCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newBenchGemmCmd(g), newBenchTrainCmd(g)}
}

// gemmShape is one matrix product C (m,n) = op(A) (m,k) · op(B) (k,n); op is "NT", "NN"
// or "TN" (the transposes of A and B).
type gemmShape struct {
	name    string
	op      string
	m, n, k int
}

// modelGemmShapes lists the products of one training step of a GPT-2 with rows = batch ×
// seq positions and width c: for each linear layer (in, out) of a block and the tied LM
// head, forward (NT: m=rows, n=out, k=in), input gradient (NN: m=rows, n=in, k=out) and
// weight gradient (TN: m=out, n=in, k=rows).
func modelGemmShapes(name string, rows, c, vocab int) []gemmShape {
	var out []gemmShape
	for _, l := range []struct {
		name    string
		in, out int
	}{{"qkv", c, 3 * c}, {"attnproj", c, c}, {"fc", c, 4 * c}, {"fcproj", 4 * c, c}, {"lmhead", c, vocab}} {
		out = append(out,
			gemmShape{name + "." + l.name + ".fwd", "NT", rows, l.out, l.in},
			gemmShape{name + "." + l.name + ".dinp", "NN", rows, l.in, l.out},
			gemmShape{name + "." + l.name + ".dw", "TN", l.out, l.in, rows})
	}
	return out
}

// gemmShapeSets are the shape sets of `bench gemm`; scripts/bench/openblas_gemm.py lists
// the same ones.
var gemmShapeSets = map[string]func() []gemmShape{
	"tiny":    func() []gemmShape { return modelGemmShapes("tiny", 12*64, 128, 67) },
	"nanogpt": func() []gemmShape { return modelGemmShapes("nanogpt", 8*256, 384, 65) },
	"square": func() []gemmShape {
		var out []gemmShape
		for _, s := range []int{256, 512, 1024, 2048} {
			out = append(out, gemmShape{fmt.Sprintf("square.%d", s), "NN", s, s, s})
		}
		return out
	},
}

// gemmOperands holds the inputs and output of one shape.
type gemmOperands struct {
	s             gemmShape
	ta, tb        bool
	a, b, c       []float32
	lda, ldb, ldc int
}

func newGemmOperands(s gemmShape, r *rand.Rand) *gemmOperands {
	o := &gemmOperands{s: s, ta: s.op[0] == 'T', tb: s.op[1] == 'T', ldc: s.n}
	o.lda, o.ldb = s.k, s.n
	if o.ta {
		o.lda = s.m
	}
	if o.tb {
		o.ldb = s.k
	}
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	o.a, o.b, o.c = fill(s.m*s.k), fill(s.k*s.n), make([]float32, s.m*s.n)
	return o
}

// gemmImpl is one implementation under test: run computes one product of o.
type gemmImpl struct {
	name string
	run  func(o *gemmOperands)
}

// timeGemm runs impl on o repeatedly for at least d and returns GFLOP/s.
func timeGemm(run func(*gemmOperands), o *gemmOperands, d time.Duration) float64 {
	start := time.Now()
	calls := 0
	for {
		run(o)
		calls++
		if el := time.Since(start); el >= d {
			return 2 * float64(o.s.m*o.s.n*o.s.k) * float64(calls) / el.Seconds() / 1e9
		}
	}
}

// openblasServer talks to scripts/bench/openblas_gemm.py --serve: it sends one shape and
// a duration per line and reads back GFLOP/s, so that OpenBLAS is timed interleaved with
// the Go implementations, under the same machine load.
type openblasServer struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	banner string
}

func startOpenBLAS(ctx context.Context, python, script string, threads int) (*openblasServer, error) {
	cmd := exec.CommandContext(ctx, python, script, "--serve", "--threads", strconv.Itoa(threads))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("--openblas: start %s %s: %w", python, script, err)
	}
	s := &openblasServer{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if s.banner, err = s.out.ReadString('\n'); err != nil {
		s.close()
		return nil, fmt.Errorf("--openblas: %s did not start: %w", script, err)
	}
	s.banner = strings.TrimSpace(s.banner)
	return s, nil
}

func (s *openblasServer) measure(sh gemmShape, d time.Duration) (float64, error) {
	if _, err := fmt.Fprintf(s.in, "%s %d %d %d %g\n", sh.op, sh.m, sh.n, sh.k, d.Seconds()); err != nil {
		return 0, fmt.Errorf("--openblas: %w", err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("--openblas: %w", err)
	}
	return strconv.ParseFloat(strings.TrimSpace(line), 64)
}

func (s *openblasServer) close() {
	s.in.Close()
	_ = s.cmd.Wait()
}

func newBenchGemmCmd(_ *globals) *cobra.Command {
	var (
		sets, kernel, openblasScript, python string
		threads, reps                        int
		dur                                  time.Duration
		noGonum                              bool
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
			var shapes []gemmShape
			for _, s := range strings.Split(sets, ",") {
				f, ok := gemmShapeSets[s]
				if !ok {
					return fmt.Errorf("--sets: unknown set %q (have tiny, nanogpt, square)", s)
				}
				shapes = append(shapes, f()...)
			}
			if threads < 1 || reps < 1 || dur <= 0 {
				return fmt.Errorf("--threads, --reps and --time must be positive")
			}
			if kernel != "" {
				if err := tensor.SetGemmKernel(kernel); err != nil {
					return fmt.Errorf("--kernel: %w", err)
				}
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))

			var gonumImpl gonum.Implementation
			impls := []gemmImpl{{"ringtrain", func(o *gemmOperands) {
				tensor.Gemm(o.ta, o.tb, o.s.m, o.s.n, o.s.k, 1, o.a, o.lda, o.b, o.ldb, 0, o.c, o.ldc)
			}}}
			if !noGonum {
				impls = append(impls, gemmImpl{"gonum", func(o *gemmOperands) {
					ta, tb := blas.NoTrans, blas.NoTrans
					if o.ta {
						ta = blas.Trans
					}
					if o.tb {
						tb = blas.Trans
					}
					gonumImpl.Sgemm(ta, tb, o.s.m, o.s.n, o.s.k, 1, o.a, o.lda, o.b, o.ldb, 0, o.c, o.ldc)
				}})
			}
			var ob *openblasServer
			if openblasScript != "" {
				var err error
				if ob, err = startOpenBLAS(cmd.Context(), python, openblasScript, threads); err != nil {
					return err
				}
				defer ob.close()
			}

			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "gemm kernel %s (available %s), threads %d, %d reps of %v per shape and implementation\n",
				tensor.GemmKernel(), strings.Join(tensor.GemmKernels(), ", "), threads, reps, dur)
			if ob != nil {
				fmt.Fprintf(w, "openblas: %s\n", ob.banner)
			}
			r := rand.New(rand.NewPCG(1, 2))
			ops := make([]*gemmOperands, len(shapes))
			for i, s := range shapes {
				ops[i] = newGemmOperands(s, r)
			}
			nimpl := len(impls)
			if ob != nil {
				nimpl++
			}
			best := make([][]float64, len(shapes))
			for i := range best {
				best[i] = make([]float64, nimpl)
			}
			var peak float64
			for rep := range reps {
				peak = max(peak, tensor.MeasurePeak(threads, dur))
				for i, o := range ops {
					if err := cmd.Context().Err(); err != nil {
						return err
					}
					for j, im := range impls {
						if rep == 0 {
							im.run(o) // warm up: pack buffers, helpers, caches
						}
						best[i][j] = max(best[i][j], timeGemm(im.run, o, dur))
					}
					if ob != nil {
						g, err := ob.measure(o.s, dur)
						if err != nil {
							return err
						}
						best[i][len(impls)] = max(best[i][len(impls)], g)
					}
				}
			}

			fmt.Fprintf(w, "peak (micro-kernel on cached data, %d threads): %.1f GFLOP/s\n\n", threads, peak)
			fmt.Fprintf(w, "%-22s %-3s %5s %5s %5s %10s %6s", "shape", "op", "m", "n", "k", "ringtrain", "%peak")
			if !noGonum {
				fmt.Fprintf(w, " %8s %8s", "gonum", "x gonum")
			}
			if ob != nil {
				fmt.Fprintf(w, " %9s %11s", "openblas", "x openblas")
			}
			fmt.Fprintln(w)
			for i, s := range shapes {
				b := best[i]
				fmt.Fprintf(w, "%-22s %-3s %5d %5d %5d %10.1f %5.0f%%", s.name, s.op, s.m, s.n, s.k, b[0], 100*b[0]/peak)
				j := 1
				if !noGonum {
					fmt.Fprintf(w, " %8.1f %8.2f", b[j], b[0]/b[j])
					j++
				}
				if ob != nil {
					fmt.Fprintf(w, " %9.1f %11.2f", b[j], b[0]/b[j])
				}
				fmt.Fprintln(w)
			}
			// Geometric means of the ratios, per shape set.
			for j, name := range []string{"gonum", "openblas"} {
				col := 1 + j
				if noGonum {
					col--
				}
				if (name == "gonum" && noGonum) || (name == "openblas" && ob == nil) {
					continue
				}
				logs := map[string][]float64{}
				for i, s := range shapes {
					set, _, _ := strings.Cut(s.name, ".")
					logs[set] = append(logs[set], math.Log(best[i][0]/best[i][col]))
				}
				fmt.Fprintf(w, "geometric mean of ringtrain/%s:", name)
				for _, set := range []string{"tiny", "nanogpt", "square"} {
					if l := logs[set]; len(l) > 0 {
						var sum float64
						for _, v := range l {
							sum += v
						}
						fmt.Fprintf(w, " %s %.2f", set, math.Exp(sum/float64(len(l))))
					}
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sets, "sets", "tiny,nanogpt,square", "shape sets, comma-separated: tiny, nanogpt, square")
	fl.IntVar(&threads, "threads", runtime.NumCPU(), "threads (GOMAXPROCS, and OpenBLAS's threads)")
	fl.IntVar(&reps, "reps", 3, "interleaved repetitions; the best is printed")
	fl.DurationVar(&dur, "time", 300*time.Millisecond, "time per measurement")
	fl.StringVar(&kernel, "kernel", "", "micro-kernel to use (default: the fastest this CPU runs)")
	fl.BoolVar(&noGonum, "no-gonum", false, "leave gonum's Sgemm out")
	fl.StringVar(&openblasScript, "openblas", "", "also time OpenBLAS with this script (scripts/bench/openblas_gemm.py)")
	fl.StringVar(&python, "python", "/usr/bin/python3", "Python for --openblas")
	return cmd
}

// randomTokens is a trainer.BatchSource of uniformly random tokens: a pure function of
// (seed, stream, step), as the trainer requires, with no dataset. It reseeds one
// generator per batch, so that it allocates nothing.
type randomTokens struct {
	seed  uint64
	vocab int
	src   *rand.PCG
	rng   *rand.Rand
}

func newRandomTokens(seed uint64, vocab int) *randomTokens {
	src := rand.NewPCG(0, 0)
	return &randomTokens{seed: seed, vocab: vocab, src: src, rng: rand.New(src)}
}

func (d *randomTokens) Batch(_ context.Context, stream int, step int64, inputs, targets []int32) error {
	d.src.Seed(d.seed, uint64(stream)<<40^uint64(step))
	for i := range inputs {
		inputs[i] = int32(d.rng.IntN(d.vocab))
		targets[i] = int32(d.rng.IntN(d.vocab))
	}
	return nil
}

func newBenchTrainCmd(_ *globals) *cobra.Command {
	var (
		c                         model.Config
		seq, batch, warmup, steps int
		threads                   int
		kernel                    string
		peakTime                  time.Duration
		seed                      uint64
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
--layers 4 --heads 4 --embd 128 --seq 64 --batch 12 --vocab 67.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if seq < 1 || batch < 1 || warmup < 0 || steps < 1 || threads < 1 {
				return fmt.Errorf("--seq, --batch, --steps and --threads must be positive and --warmup >= 0")
			}
			if kernel != "" {
				if err := tensor.SetGemmKernel(kernel); err != nil {
					return fmt.Errorf("--kernel: %w", err)
				}
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
			c.MaxSeqLen = seq
			spec := trainer.DefaultSpec()
			spec.Model, spec.SeqLen, spec.MicroBatch, spec.Streams = c, seq, batch, 1
			spec.Steps, spec.WarmupSteps, spec.Seed = int64(warmup+steps), 0, seed
			if err := spec.Validate(); err != nil {
				return err
			}
			m, err := model.New(c, nil)
			if err != nil {
				return err
			}
			m.InitWeights(seed)
			tr, err := trainer.New(spec, m, model.NewAdamW(c), newRandomTokens(seed, c.VocabSize), -1)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			n := c.NumParams()
			fmt.Fprintf(w, "model: layers %d heads %d embd %d seq %d batch %d vocab %d, %d params; gemm kernel %s, threads %d\n",
				c.Layers, c.Heads, c.Embd, seq, batch, c.VocabSize, n, tensor.GemmKernel(), threads)

			ctx := cmd.Context()
			step := func() (float64, error) {
				loss, err := tr.Gradients(ctx, tr.Step, spec.AllStreams(), nil)
				if err != nil {
					return 0, err
				}
				if _, _, err := tr.Apply(); err != nil {
					return 0, err
				}
				return loss / float64(batch*seq), nil
			}
			var first, last float64
			for i := range warmup {
				l, err := step()
				if err != nil {
					return err
				}
				if i == 0 {
					first = l
				}
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			cpu0 := processCPU()
			start := time.Now()
			for range steps {
				if last, err = step(); err != nil {
					return err
				}
			}
			elapsed := time.Since(start)
			cpu := processCPU() - cpu0
			runtime.ReadMemStats(&ms)
			allocs := float64(ms.Mallocs-mallocs) / float64(steps)
			if warmup == 0 {
				first = last
			}
			peak := tensor.MeasurePeak(threads, peakTime)

			tokens := float64(steps * batch * seq)
			tps := tokens / elapsed.Seconds()
			flopsPerToken := 6*float64(n) + 6*float64(c.Layers*seq*c.Embd)
			fmt.Fprintf(w, "loss %.4f (first step) -> %.4f (last)\n", first, last)
			fmt.Fprintf(w, "timed %d steps after %d warmup: %.3f s, %.1f ms/step, %.0f tokens/s\n",
				steps, warmup, elapsed.Seconds(), 1000*elapsed.Seconds()/float64(steps), tps)
			fmt.Fprintf(w, "process CPU time %.3f s, %.1f ms/step: %.2f of %d threads busy (other load on the machine shows as less)\n",
				cpu.Seconds(), 1000*cpu.Seconds()/float64(steps), cpu.Seconds()/elapsed.Seconds(), threads)
			fmt.Fprintf(w, "model FLOPs %.3g per token: %.1f GFLOP/s, MFU %.1f%% of the measured peak %.1f GFLOP/s\n",
				flopsPerToken, flopsPerToken*tps/1e9, 100*flopsPerToken*tps/1e9/peak, peak)
			fmt.Fprintf(w, "allocations %.1f per step; peak RSS %s\n", allocs, peakRSS())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Layers, "layers", 6, "transformer layers")
	fl.IntVar(&c.Heads, "heads", 6, "attention heads")
	fl.IntVar(&c.Embd, "embd", 384, "embedding width")
	fl.IntVar(&c.VocabSize, "vocab", 65, "vocabulary size")
	fl.IntVar(&seq, "seq", 256, "sequence length T (and the model's context)")
	fl.IntVar(&batch, "batch", 8, "sequences per step")
	fl.IntVar(&warmup, "warmup", 3, "untimed first steps")
	fl.IntVar(&steps, "steps", 10, "timed steps")
	fl.IntVar(&threads, "threads", runtime.NumCPU(), "threads (GOMAXPROCS)")
	fl.StringVar(&kernel, "kernel", "", "gemm micro-kernel to use (default: the fastest this CPU runs)")
	fl.DurationVar(&peakTime, "peak-time", time.Second, "time to measure the peak for MFU")
	fl.Uint64Var(&seed, "seed", 1337, "seed of the weights and tokens")
	return cmd
}

// processCPU returns the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS returns the process's peak resident set size (VmHWM in /proc/self/status),
// or "unknown" where there is no such file.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.Atoi(f[0]); err == nil {
					return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
				}
			}
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
