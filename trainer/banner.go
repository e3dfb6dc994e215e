package trainer

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/model"
)

// ManyEpochs is the most passes over the train split a job makes before RunInfo
// warns that it will likely memorise the data.
const ManyEpochs = 10

// RunInfo describes the run a prepared job is about to make: what the start banner
// prints (as nanoGPT prints the parameter count and the tokens per iteration) and
// what it warns about. Describe builds it; Run announces it, and so does a
// cluster's rank 0, once, when it first trains the job.
type RunInfo struct {
	Model         model.Config
	Objective     Objective
	Params        int   // trainable float32 parameters
	Streams       int   // data streams M
	MicroBatch    int   // sequences per stream per step
	SeqLen        int   // tokens per sequence T
	TokensPerStep int64 // Spec.TokensPerStep: streams x micro_batch x seq_len, both rows of a pair
	TrainTokens   int64 // tokens in the train split
	TrainShards   int   // files of the train split
	StepsPerEpoch int64 // steps in one pass over the train split (the sampler's epoch)
	Steps         int64 // the job's last step
	StartStep     int64 // the step training starts from: 0, or the resumed checkpoint's
	ResumedFrom   string
	InitFrom      string
	LR, MinLR     float64
	WarmupSteps   int64
	Out           string // run directory
	// Workers is the number of workers of a cluster's first generation, 0 for a
	// single process.
	Workers int
}

// Describe returns the RunInfo of p when training starts at startStep, resumed from
// the checkpoint resumedFrom ("" for a fresh start).
func Describe(p *Prepared, startStep int64, resumedFrom string) RunInfo {
	s := p.Spec
	r := RunInfo{
		Model: s.Model, Objective: s.Objective, Params: s.Model.NumParams(),
		Streams: s.Streams, MicroBatch: s.MicroBatch, SeqLen: s.SeqLen,
		TokensPerStep: s.TokensPerStep(),
		Steps:         s.Steps, StartStep: startStep, ResumedFrom: resumedFrom, InitFrom: s.InitFrom,
		LR: s.LR, MinLR: s.MinLR, WarmupSteps: s.WarmupSteps, Out: s.Out,
		StepsPerEpoch: p.Loader.Sampler().StepsPerEpoch(),
	}
	for _, n := range p.Dataset.Manifest().TrainTokens() {
		r.TrainTokens += n
		r.TrainShards++
	}
	return r
}

// Epochs is the number of passes over the train split the whole job makes.
func (r RunInfo) Epochs() float64 { return float64(r.Steps) / float64(max(r.StepsPerEpoch, 1)) }

// Banner returns the start banner, one line per element, without newlines:
//
//	model: 4 layers, 4 heads, 128 wide, context 64, vocabulary 65; 801,408 (0.80M) parameters; causal objective
//	batch: 12 sequences (1 stream x 12) of 64 tokens = 768 tokens per step
//	data: 301,966 train tokens in 16 shards; 390 steps per epoch
//	run: 2,000 steps, 5.1 epochs, from fresh weights; lr 0.001 after 100 warmup steps, cosine to 0.0001
//	writes: run/ckpt/step-NNNNNN (checkpoints), run/metrics.jsonl
//
// A cluster's batch line ends with ", on N workers"; a resumed run's run line says
// "resuming at step S from DIR".
func (r RunInfo) Banner() []string {
	m := r.Model
	workers := ""
	if r.Workers > 0 {
		workers = ", on " + plural(r.Workers, "worker")
	}
	start := "from fresh weights"
	switch {
	case r.ResumedFrom != "":
		start = fmt.Sprintf("resuming at step %s from %s", thousands(r.StartStep), r.ResumedFrom)
	case r.InitFrom != "":
		start = "from the weights of " + r.InitFrom
	}
	batch := fmt.Sprintf("batch: %d sequences (%s x %d) of %d tokens = %s tokens per step%s",
		r.Streams*r.MicroBatch, plural(r.Streams, "stream"), r.MicroBatch, r.SeqLen, thousands(r.TokensPerStep), workers)
	if isPreference(r.Objective) {
		batch = fmt.Sprintf("batch: %d pairs (%s x %d) of two rows of %d tokens = %s tokens per step%s",
			r.Streams*r.MicroBatch, plural(r.Streams, "stream"), r.MicroBatch, r.SeqLen, thousands(r.TokensPerStep), workers)
	}
	if r.Objective == PPO {
		batch = fmt.Sprintf("batch: %d prompts (%s x %d), each answered in a row of %d tokens%s",
			r.Streams*r.MicroBatch, plural(r.Streams, "stream"), r.MicroBatch, r.SeqLen, workers)
	}
	return []string{
		fmt.Sprintf("model: %s, %s, %d wide, context %d, vocabulary %d; %s parameters; %s objective",
			plural(m.Layers, "layer"), plural(m.Heads, "head"), m.Embd, m.MaxSeqLen, m.VocabSize, count(r.Params), r.Objective),
		batch,
		fmt.Sprintf("data: %s train tokens in %s; %s steps per epoch",
			thousands(r.TrainTokens), plural(r.TrainShards, "shard"), thousands(r.StepsPerEpoch)),
		fmt.Sprintf("run: %s steps, %s epochs, %s; lr %g after %s warmup steps, cosine to %g",
			thousands(r.Steps), epochs(r.Epochs()), start, r.LR, thousands(r.WarmupSteps), r.MinLR),
		fmt.Sprintf("writes: %s (checkpoints), %s", filepath.Join(CheckpointRoot(r.Out), "step-NNNNNN"), filepath.Join(r.Out, metricsFile)),
	}
}

// Warnings returns what in the job is likely not what its author meant, one
// sentence each: a warmup that is not shorter than the run (the learning rate then
// only ramps up and never decays), and more than ManyEpochs passes over the train
// split.
func (r RunInfo) Warnings() []string {
	var w []string
	if r.WarmupSteps >= r.Steps {
		last := LearningRate(r.Steps-1, r.WarmupSteps, r.Steps, r.LR, r.MinLR)
		w = append(w, fmt.Sprintf("warmup of %s steps is not shorter than the run's %s steps: the learning rate only ramps up (to %.3g at the last step, of a peak %g) and never decays",
			thousands(r.WarmupSteps), thousands(r.Steps), last, r.LR))
	}
	if e := r.Epochs(); e > ManyEpochs {
		w = append(w, fmt.Sprintf("%s steps make %s passes over the train split (%s tokens, %s steps per epoch), more than %d: the model will likely memorise it; prepare more data or train fewer steps",
			thousands(r.Steps), epochs(e), thousands(r.TrainTokens), thousands(r.StepsPerEpoch), ManyEpochs))
	}
	return w
}

// Announce writes the banner and then every warning, as "warning: ..." lines, to w
// (nothing when w is nil), and logs every warning at WARN on log (when not nil).
// Write errors are ignored, as for the progress output.
func (r RunInfo) Announce(w io.Writer, log *slog.Logger) {
	warnings := r.Warnings()
	if w != nil {
		var b strings.Builder
		for _, l := range r.Banner() {
			b.WriteString(l + "\n")
		}
		for _, l := range warnings {
			b.WriteString("warning: " + l + "\n")
		}
		io.WriteString(w, b.String())
	}
	if log != nil {
		for _, l := range warnings {
			log.Warn(l)
		}
	}
}

// count formats a parameter count with its digits grouped and, from a thousand on,
// in K, M (from 0.1M, as nanoGPT prints) or B as well: "801,408 (0.80M)".
func count(n int) string {
	f := float64(n)
	switch {
	case f >= 1e9:
		return fmt.Sprintf("%s (%.2fB)", thousands(int64(n)), f/1e9)
	case f >= 1e5:
		return fmt.Sprintf("%s (%.2fM)", thousands(int64(n)), f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%s (%.1fK)", thousands(int64(n)), f/1e3)
	}
	return thousands(int64(n))
}

// epochs formats a number of epochs: whole from 10 on, else two significant digits.
func epochs(e float64) string {
	if e >= 10 {
		return thousands(int64(math.Round(e)))
	}
	return strconv.FormatFloat(e, 'g', 2, 64)
}

// plural is "1 stream", "2 streams".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
