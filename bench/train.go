package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/trainer"
)

// TrainOptions configure Train. The model's context (Model.MaxSeqLen) is Seq.
type TrainOptions struct {
	Model    model.Config   // layers, heads, width and vocabulary of the GPT-2
	Seq      int            // sequence length T (>= 1)
	Batch    int            // sequences per step (>= 1)
	Warmup   int            // untimed first steps (>= 0)
	Steps    int            // timed steps (>= 1)
	Threads  int            // GOMAXPROCS while Train runs, and the peak's threads (>= 1)
	PeakTime time.Duration  // time to measure the peak for MFU
	Seed     uint64         // seed of the weights and tokens
	Streams  int            // TrainExact only: streams the batch is split over (>= 1)
	Backend  tensor.Backend // what the model computes on; nil means the CPU
}

// TrainResult is what Train measured.
type TrainResult struct {
	Params             int     // the model's parameters
	FirstLoss, Loss    float64 // mean loss per token of the first step and the last
	Elapsed            time.Duration
	TokensPerSecond    float64
	CPU                time.Duration // process CPU time over the timed steps
	FLOPsPerToken      float64       // 6N + 6·L·T·C
	PeakGFLOPS         float64       // the peak, measured after the steps (see Peaker)
	Gradients, Apply   time.Duration // of Elapsed: forward and backward with the gradients' hand-over; clipping and AdamW
	MFU                float64       // model FLOP utilisation: FLOPsPerToken × tokens/s over the peak
	AllocationsPerStep float64
	PeakRSS            string // VmHWM of /proc/self/status, or "unknown"
}

// Peaker is a backend that measures its own float32 peak for MFU (a GPU's matrix
// product); on any other, Train measures the CPU's gemm micro-kernel.
type Peaker interface {
	// MeasurePeak runs float32 matrix products for about d and returns their GFLOP/s.
	MeasurePeak(d time.Duration) float64
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

// Train builds a GPT-2 of o's shape in memory, feeds it random tokens, and times full
// training steps (forward, backward, gradient clipping and AdamW, through the
// trainer) after o.Warmup untimed ones, with the micro-kernel tensor uses. It writes
// the report to w: the model first, then, once measured, the losses, tokens/s,
// ms/step, the process's CPU time, the model FLOP utilisation over the peak measured
// in the same run, allocations per step and the peak resident memory. It sets
// GOMAXPROCS to o.Threads until it returns.
func Train(ctx context.Context, o TrainOptions, w io.Writer) (*TrainResult, error) {
	if o.Seq < 1 || o.Batch < 1 || o.Warmup < 0 || o.Steps < 1 || o.Threads < 1 {
		return nil, fmt.Errorf("%w: Seq, Batch, Steps and Threads must be positive and Warmup >= 0", ErrBadOptions)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(o.Threads))
	c, seq, batch, warmup, steps, threads, seed := o.Model, o.Seq, o.Batch, o.Warmup, o.Steps, o.Threads, o.Seed
	c.MaxSeqLen = seq
	spec := trainer.DefaultSpec()
	spec.Model, spec.SeqLen, spec.MicroBatch, spec.Streams = c, seq, batch, 1
	spec.Steps, spec.WarmupSteps, spec.Seed = int64(warmup+steps), 0, seed
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	m, err := model.New(c, o.Backend)
	if err != nil {
		return nil, err
	}
	m.InitWeights(seed)
	tr, err := trainer.New(spec, m, model.NewAdamW(c), newRandomTokens(seed, c.VocabSize), -1)
	if err != nil {
		return nil, err
	}
	res := &TrainResult{Params: c.NumParams()}
	n := res.Params
	kernel := "" // the CPU's gemm micro-kernel, where it does the work
	if m.Backend().HostShared() {
		kernel = ", gemm kernel " + tensor.GemmKernel()
	}
	fmt.Fprintf(w, "model: layers %d heads %d embd %d seq %d batch %d vocab %d, %d params; device %s%s, threads %d\n",
		c.Layers, c.Heads, c.Embd, seq, batch, c.VocabSize, n, m.Backend().Device(), kernel, threads)

	var gradTime, applyTime time.Duration
	step := func() (float64, error) {
		t0 := time.Now()
		loss, err := tr.Gradients(ctx, tr.Step, spec.AllStreams(), nil)
		if err != nil {
			return 0, err
		}
		t1 := time.Now()
		if _, _, err := tr.Apply(); err != nil {
			return 0, err
		}
		gradTime, applyTime = gradTime+t1.Sub(t0), applyTime+time.Since(t1)
		return loss / float64(batch*seq), nil
	}
	var first, last float64
	for i := range warmup {
		l, err := step()
		if err != nil {
			return nil, err
		}
		if i == 0 {
			first = l
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	gradTime, applyTime = 0, 0
	prof, _ := m.Backend().(tensor.Profiler)
	if prof != nil && !prof.Profiling() {
		prof = nil
	}
	if prof != nil {
		prof.ResetProfile()
	}
	cpu0 := processCPU()
	start := time.Now()
	for range steps {
		if last, err = step(); err != nil {
			return nil, err
		}
	}
	elapsed := time.Since(start)
	var ops []tensor.OpTime // the timed steps' ops, before the peak's products
	if prof != nil {
		ops = prof.Profile()
	}
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&ms)
	allocs := float64(ms.Mallocs-mallocs) / float64(steps)
	if warmup == 0 {
		first = last
	}
	peak, peakOf := 0.0, "gemm micro-kernel on the CPU"
	if p, ok := m.Backend().(Peaker); ok {
		peak, peakOf = p.MeasurePeak(o.PeakTime), "matrix product on "+m.Backend().Device()
	} else {
		peak = tensor.MeasurePeak(threads, o.PeakTime)
	}

	tokens := float64(steps * batch * seq)
	tps := tokens / elapsed.Seconds()
	flopsPerToken := 6*float64(n) + 6*float64(c.Layers*seq*c.Embd)
	*res = TrainResult{Params: n, FirstLoss: first, Loss: last, Elapsed: elapsed, TokensPerSecond: tps, CPU: cpu,
		FLOPsPerToken: flopsPerToken, PeakGFLOPS: peak, MFU: flopsPerToken * tps / 1e9 / peak,
		Gradients: gradTime, Apply: applyTime,
		AllocationsPerStep: allocs, PeakRSS: peakRSS()}
	fmt.Fprintf(w, "loss %.4f (first step) -> %.4f (last)\n", first, last)
	fmt.Fprintf(w, "timed %d steps after %d warmup: %.3f s, %.1f ms/step, %.0f tokens/s\n",
		steps, warmup, elapsed.Seconds(), 1000*elapsed.Seconds()/float64(steps), tps)
	perStep := func(d time.Duration) float64 { return 1000 * d.Seconds() / float64(steps) }
	fmt.Fprintf(w, "of a step: gradients %.1f ms (forward, backward, hand-over), apply %.1f ms (clipping, AdamW)\n",
		perStep(gradTime), perStep(applyTime))
	fmt.Fprintf(w, "process CPU time %.3f s, %.1f ms/step: %.2f of %d threads busy (other load on the machine shows as less)\n",
		cpu.Seconds(), 1000*cpu.Seconds()/float64(steps), cpu.Seconds()/elapsed.Seconds(), threads)
	fmt.Fprintf(w, "model FLOPs %.3g per token: %.1f GFLOP/s, MFU %.1f%% of the measured peak %.1f GFLOP/s (%s)\n",
		flopsPerToken, flopsPerToken*tps/1e9, 100*flopsPerToken*tps/1e9/peak, peak, peakOf)
	fmt.Fprintf(w, "allocations %.1f per step; peak RSS %s\n", allocs, res.PeakRSS)
	if ops != nil {
		fmt.Fprintf(w, "time per step of each op on %s (each op waited for):\n", m.Backend().Device())
		for _, t := range ops {
			fmt.Fprintf(w, "  %-28s %6d calls %9.2f ms %5.1f%%\n", t.Op, t.Calls/steps,
				perStep(t.Total), 100*t.Total.Seconds()/elapsed.Seconds())
		}
	}
	return res, nil
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
