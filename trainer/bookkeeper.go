package trainer

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/metrics/tensorboard"
	"github.com/ringtrain/ringtrain/progress"
)

// metricsFile is the name of the file in a run directory that holds one JSON record
// per step.
const metricsFile = "metrics.jsonl"

// TensorBoardDir is the folder under a run directory that holds its TensorBoard
// event files: `tensorboard --logdir <out>/tb`.
func TensorBoardDir(out string) string { return filepath.Join(out, "tb") }

// tensorBoardScalars maps the fields of a step's record to the tags of its
// TensorBoard event, in the order they are written. A field a record lacks (the
// throughput off log steps, the validation loss off evaluation steps, the step's
// phases outside a cluster) is left out of that step's event.
var tensorBoardScalars = []struct{ field, tag string }{
	{"loss", "train/loss"},
	{"lr", "train/lr"},
	{"grad_norm", "train/grad_norm"},
	{"tokens_per_sec", "train/tokens_per_sec"},
	{"reward_acc", "train/reward_acc"},
	{"reward_margin", "train/reward_margin"},
	{"reward_chosen", "train/reward_chosen"},
	{"reward_rejected", "train/reward_rejected"},
	{"ppo_reward", "ppo/reward"},
	{"ppo_kl", "ppo/kl"},
	{"ppo_beta", "ppo/beta"},
	{"ppo_entropy", "ppo/entropy"},
	{"ppo_clip_frac", "ppo/clip_frac"},
	{"ppo_value_loss", "ppo/value_loss"},
	{"ppo_policy_loss", "ppo/policy_loss"},
	{"ppo_response_len", "ppo/response_len"},
	{"val_loss", "val/loss"},
	{"val_token_acc", "val/token_acc"},
	{"step_s", "time/step_s"},
	{"compute_s", "time/compute_s"},
	{"allreduce_s", "time/allreduce_s"},
	{"allreduce_busy_s", "time/allreduce_busy_s"},
	{"optimizer_s", "time/optimizer_s"},
	{"waiting_s", "time/waiting_s"},
	{"eval_s", "time/eval_s"},
}

// Record is one line of metrics.jsonl: a JSON object, written with its keys in sorted
// order. Bookkeeper.Step fills in what every run records; a cluster adds its own
// fields (generation, world size, the step's time split, eval_s) before Write.
type Record map[string]any

// StepDone is what a finished step hands to the books.
type StepDone struct {
	Step int64 // steps applied, the finished one included
	// Tokens is the number of tokens the run's steps up to Step processed over the
	// global batch (Trainer.TokensSeen): metrics.jsonl's tokens, and its tokens/s.
	Tokens   int64
	Loss     float64 // mean loss of the step over the global batch
	LR       float64 // learning rate the step applied
	GradNorm float64 // gradient norm before clipping
	// Workers is the ring size of a cluster's step, 0 in a single process. A
	// cluster's progress line shows it in place of the learning rate and norm.
	Workers int
}

// BookkeeperOptions configure a Bookkeeper.
type BookkeeperOptions struct {
	// Progress receives one line per log interval and per evaluation, or a live
	// bar when it is a terminal (package progress); nil for none.
	Progress io.Writer
	// Start is when this process began training the run: elapsed_s counts from it.
	// Zero means now.
	Start time.Time
	// StartStep is the step this process began training at: the progress ETA is
	// reckoned from the steps done since.
	StartStep int64
	// StartTokens is the tokens processed by StartStep (Trainer.TokensSeen then):
	// the first tokens/s window counts from it.
	StartTokens int64
	// Logger, when set, receives a debug record of every log step (step, loss, lr,
	// grad_norm, tokens_per_sec).
	Logger *slog.Logger
	// NoTensorBoard turns off the TensorBoard event files under <out>/tb.
	NoTensorBoard bool
}

// Bookkeeper keeps a training run's books after every step: it writes the step's
// record to <out>/metrics.jsonl and as scalars to a TensorBoard event file under
// <out>/tb (unless BookkeeperOptions.NoTensorBoard), drives the progress output, says
// (through its Cadence) when to evaluate and checkpoint, and (Stop) whether to stop
// early. trainer.Run keeps one for the run; a cluster's rank 0 keeps one for the job,
// across generations. The caller steps and evaluates; the Bookkeeper records:
//
//	rec := bk.Step(trainer.StepDone{Step: tr.Step, Tokens: tr.TokensSeen(), Loss: loss, LR: lr, GradNorm: norm})
//	if bk.Cadence().Evaluate(tr.Step) {
//		vl, err := tr.Evaluate(ctx, p.Val)
//		...
//		bk.Evaluated(rec, tr.Step, vl)
//	}
//	err := bk.Write(rec)
//	// ... the interval checkpoint ...
//	if r := bk.Stop(tr.Step); r != "" {
//		bk.Stopped(tr.Step, r) // then end the run with its final checkpoint
//	}
//
// A Bookkeeper is used from the training loop's goroutine only.
type Bookkeeper struct {
	cadence Cadence
	out     string
	start   time.Time
	prog    *progress.Printer
	log     *slog.Logger // nil: no debug records

	// The tokens/s window of metrics.jsonl: since the last log step, or StartWindow.
	winStart  time.Time
	winTokens int64

	file *os.File // metrics.jsonl, once open
	enc  *json.Encoder

	evals Evals // the evaluations booked, for the stopping rules
	tbOff bool
	tb    *tensorboard.Writer // the event file, from the first Write after New or StartWindow
}

// NewBookkeeper returns the books of spec's run at cadence c. The progress output's
// clock starts now; metrics.jsonl is opened by Open, or by the first Write.
func NewBookkeeper(spec Spec, c Cadence, o BookkeeperOptions) *Bookkeeper {
	now := time.Now()
	if o.Start.IsZero() {
		o.Start = now
	}
	return &Bookkeeper{
		cadence: c, out: spec.Out, start: o.Start, log: o.Logger,
		prog: progress.New(o.Progress, progress.Options{Steps: spec.Steps, StartStep: o.StartStep,
			StartTokens: o.StartTokens, Every: spec.LogInterval}),
		winStart: now, winTokens: o.StartTokens, tbOff: o.NoTensorBoard,
	}
}

// Cadence returns when the run logs, evaluates and checkpoints.
func (b *Bookkeeper) Cadence() Cadence { return b.cadence }

// Open creates the run directory and opens its metrics.jsonl for appending (a
// resumed run appends to the same file). It does nothing once the file is open.
func (b *Bookkeeper) Open() error {
	if b.enc != nil {
		return nil
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(b.out, metricsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	b.file, b.enc = f, json.NewEncoder(f)
	return nil
}

// StartWindow restarts the tokens/s window of metrics.jsonl now, at a step by which
// the run had processed tokens (Trainer.TokensSeen). A cluster
// calls it when a generation begins, so that building the ring and syncing state
// count in no window. It also ends the current TensorBoard event file: the next
// Write starts a new one, marked as a restart at its first step, since the
// generation may redo steps that an earlier one (or an earlier rank 0) recorded. It
// returns the error of closing that file, if any.
func (b *Bookkeeper) StartWindow(tokens int64) error {
	b.winStart, b.winTokens = time.Now(), tokens
	return b.closeEvents()
}

// Step books a finished step: it returns the step's record (step, loss, lr,
// grad_norm, tokens, elapsed_s, time, and tokens_per_sec since the last log step on
// a log step) and updates the progress output. The caller owns the record.
func (b *Bookkeeper) Step(d StepDone) Record {
	rec := Record{"step": d.Step, "loss": d.Loss, "lr": d.LR, "grad_norm": d.GradNorm,
		"tokens": d.Tokens, "elapsed_s": time.Since(b.start).Seconds(),
		"time": time.Now().UTC().Format(time.RFC3339Nano)}
	if b.cadence.Log(d.Step) {
		now := time.Now()
		tps := float64(d.Tokens-b.winTokens) / now.Sub(b.winStart).Seconds()
		b.winStart, b.winTokens = now, d.Tokens
		rec["tokens_per_sec"] = tps
		if b.log != nil {
			b.log.Debug("step", "step", d.Step, "loss", d.Loss, "lr", d.LR, "grad_norm", d.GradNorm, "tokens_per_sec", tps)
		}
	}
	st := progress.Status{Step: d.Step, Tokens: d.Tokens, Loss: d.Loss, Workers: d.Workers}
	if d.Workers == 0 {
		st.LR, st.GradNorm = d.LR, d.GradNorm
	}
	b.prog.Update(st)
	return rec
}

// Evaluated books the validation loss measured after step into its record rec
// (val_loss, and elapsed_s again, now that the evaluation is done) and into the
// evaluations the stopping rules read, and prints the validation line.
func (b *Bookkeeper) Evaluated(rec Record, step int64, valLoss float64) {
	rec["val_loss"], rec["elapsed_s"] = valLoss, time.Since(b.start).Seconds()
	b.evals = b.evals.Add(step, valLoss)
	b.prog.Println(ValidationLine(step, b.cadence.Steps, valLoss))
}

// EvaluatedAccuracy books the token accuracy of the evaluation after step (the share
// of trained target tokens the model ranks first; SFT runs) into rec as val_token_acc
// and prints it.
func (b *Bookkeeper) EvaluatedAccuracy(rec Record, step int64, acc float64) {
	rec["val_token_acc"] = acc
	b.prog.Println(fmt.Sprintf("step %*d/%d  val token accuracy %.4f", digits(b.cadence.Steps), step, b.cadence.Steps, acc))
}

// Evals returns the evaluations booked so far.
func (b *Bookkeeper) Evals() Evals { return b.evals }

// Stop says whether the run stops after step (Cadence.Stop), with the evaluations
// booked so far and the wall time since Start (the elapsed_s of metrics.jsonl). It
// is asked once the step's books, evaluation and checkpoint are done.
func (b *Bookkeeper) Stop(step int64) StopReason {
	return b.cadence.Stop(step, time.Since(b.start), b.evals)
}

// Stopped prints the line that says the run stops after step, and why
// (Cadence.StopLine).
func (b *Bookkeeper) Stopped(step int64, r StopReason) {
	b.prog.Println(b.cadence.StopLine(step, r, b.evals))
}

// EvalLogMessage is the message of the info record that Run and a cluster's rank 0
// log after each evaluation, with step and val_loss. The progress output prints the
// same evaluation as its ValidationLine, so a front end that shows the progress and
// the logs on one terminal may lower that record to debug to print it once.
const EvalLogMessage = "eval"

// Write appends rec to metrics.jsonl, opening it first if need be, and writes its
// scalars (tensorBoardScalars) as one TensorBoard event at its step. The first event
// of the Bookkeeper (and the first after StartWindow) creates a new event file under
// <out>/tb that begins with a SessionLog START at that step, so that TensorBoard
// drops the points an interrupted earlier process recorded from there on. Every
// event is in the file when Write returns, for a live TensorBoard to read.
func (b *Bookkeeper) Write(rec Record) error {
	if err := b.Open(); err != nil {
		return err
	}
	if err := b.enc.Encode(rec); err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	return b.writeEvent(rec)
}

// writeEvent writes rec's scalars to the event file, creating it first if need be.
func (b *Bookkeeper) writeEvent(rec Record) error {
	if b.tbOff {
		return nil
	}
	step, ok := rec["step"].(int64)
	if !ok {
		return fmt.Errorf("tensorboard: record without a step: %v", rec)
	}
	if b.tb == nil {
		w, err := tensorboard.Create(TensorBoardDir(b.out), tensorboard.Options{})
		if err != nil {
			return err
		}
		if err := w.Start(step, time.Now()); err != nil {
			w.Close()
			return err
		}
		b.tb = w
	}
	scalars := make([]tensorboard.Scalar, 0, len(tensorBoardScalars))
	for _, s := range tensorBoardScalars {
		if v, ok := rec[s.field].(float64); ok {
			scalars = append(scalars, tensorboard.Scalar{Tag: s.tag, Value: float32(v)})
		}
	}
	return b.tb.Scalars(step, time.Now(), scalars)
}

// closeEvents fsyncs and closes the event file, if one is open.
func (b *Bookkeeper) closeEvents() error {
	if b.tb == nil {
		return nil
	}
	err := b.tb.Close()
	b.tb = nil
	return err
}

// Close ends the progress output (a bar's line), closes metrics.jsonl and fsyncs
// and closes the TensorBoard event file; a later Write opens metrics.jsonl again and
// starts a new event file. It returns the event file's error, if any. Closing twice
// is harmless.
func (b *Bookkeeper) Close() error {
	b.prog.Finish()
	if b.file != nil {
		b.file.Close()
		b.file, b.enc = nil, nil
	}
	return b.closeEvents()
}

// ValidationLine is the line printed after an evaluation, its step padded to the
// width of the last step like the progress lines:
//
//	step 250/600  val loss 2.4187
func ValidationLine(step, steps int64, valLoss float64) string {
	return fmt.Sprintf("step %*d/%d  val loss %.4f", digits(steps), step, steps, valLoss)
}

// digits is the number of decimal digits of n.
func digits(n int64) int { return len(fmt.Sprint(n)) }
