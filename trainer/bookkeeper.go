package trainer

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/progress"
)

// metricsFile is the name of the file in a run directory that holds one JSON record
// per step.
const metricsFile = "metrics.jsonl"

// Record is one line of metrics.jsonl: a JSON object, written with its keys in sorted
// order. Bookkeeper.Step fills in what every run records; a cluster adds its own
// fields (generation, world size, the step's time split, eval_s) before Write.
type Record map[string]any

// StepDone is what a finished step hands to the books.
type StepDone struct {
	Step     int64   // steps applied, the finished one included
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
	// Logger, when set, receives a debug record of every log step (step, loss, lr,
	// grad_norm, tokens_per_sec).
	Logger *slog.Logger
}

// Bookkeeper keeps a training run's books after every step: it writes the step's
// record to <out>/metrics.jsonl, drives the progress output, and says (through its
// Cadence) when to evaluate and checkpoint. trainer.Run keeps one for the run;
// a cluster's rank 0 keeps one for the job, across generations. The caller steps and
// evaluates; the Bookkeeper records:
//
//	rec := bk.Step(trainer.StepDone{Step: tr.Step, Loss: loss, LR: lr, GradNorm: norm})
//	if bk.Cadence().Evaluate(tr.Step) {
//		vl, err := tr.Evaluate(ctx, p.Val)
//		...
//		bk.Evaluated(rec, tr.Step, vl)
//	}
//	err := bk.Write(rec)
//
// A Bookkeeper is used from the training loop's goroutine only.
type Bookkeeper struct {
	cadence       Cadence
	out           string
	tokensPerStep int64
	start         time.Time
	prog          *progress.Printer
	log           *slog.Logger // nil: no debug records

	// The tokens/s window of metrics.jsonl: since the last log step, or StartWindow.
	winStart time.Time
	winStep  int64

	file *os.File // metrics.jsonl, once open
	enc  *json.Encoder
}

// NewBookkeeper returns the books of spec's run at cadence c. The progress output's
// clock starts now; metrics.jsonl is opened by Open, or by the first Write.
func NewBookkeeper(spec Spec, c Cadence, o BookkeeperOptions) *Bookkeeper {
	now := time.Now()
	if o.Start.IsZero() {
		o.Start = now
	}
	tokensPerStep := int64(spec.GlobalBatch() * spec.SeqLen)
	return &Bookkeeper{
		cadence: c, out: spec.Out, tokensPerStep: tokensPerStep, start: o.Start, log: o.Logger,
		prog: progress.New(o.Progress, progress.Options{Steps: spec.Steps, StartStep: o.StartStep,
			TokensPerStep: tokensPerStep, Every: spec.LogInterval}),
		winStart: now, winStep: o.StartStep,
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

// StartWindow restarts the tokens/s window of metrics.jsonl at step, now. A cluster
// calls it when a generation begins, so that building the ring and syncing state
// count in no window.
func (b *Bookkeeper) StartWindow(step int64) { b.winStart, b.winStep = time.Now(), step }

// Step books a finished step: it returns the step's record (step, loss, lr,
// grad_norm, tokens, elapsed_s, time, and tokens_per_sec since the last log step on
// a log step) and updates the progress output. The caller owns the record.
func (b *Bookkeeper) Step(d StepDone) Record {
	rec := Record{"step": d.Step, "loss": d.Loss, "lr": d.LR, "grad_norm": d.GradNorm,
		"tokens": d.Step * b.tokensPerStep, "elapsed_s": time.Since(b.start).Seconds(),
		"time": time.Now().UTC().Format(time.RFC3339Nano)}
	if b.cadence.Log(d.Step) {
		now := time.Now()
		tps := float64((d.Step-b.winStep)*b.tokensPerStep) / now.Sub(b.winStart).Seconds()
		b.winStart, b.winStep = now, d.Step
		rec["tokens_per_sec"] = tps
		if b.log != nil {
			b.log.Debug("step", "step", d.Step, "loss", d.Loss, "lr", d.LR, "grad_norm", d.GradNorm, "tokens_per_sec", tps)
		}
	}
	st := progress.Status{Step: d.Step, Loss: d.Loss, Workers: d.Workers}
	if d.Workers == 0 {
		st.LR, st.GradNorm = d.LR, d.GradNorm
	}
	b.prog.Update(st)
	return rec
}

// Evaluated books the validation loss measured after step into its record rec
// (val_loss, and elapsed_s again, now that the evaluation is done) and prints the
// validation line.
func (b *Bookkeeper) Evaluated(rec Record, step int64, valLoss float64) {
	rec["val_loss"], rec["elapsed_s"] = valLoss, time.Since(b.start).Seconds()
	b.prog.Println(ValidationLine(step, b.cadence.Steps, valLoss))
}

// EvalLogMessage is the message of the info record that Run and a cluster's rank 0
// log after each evaluation, with step and val_loss. The progress output prints the
// same evaluation as its ValidationLine, so a front end that shows the progress and
// the logs on one terminal may lower that record to debug to print it once.
const EvalLogMessage = "eval"

// Write appends rec to metrics.jsonl, opening it first if need be.
func (b *Bookkeeper) Write(rec Record) error {
	if err := b.Open(); err != nil {
		return err
	}
	if err := b.enc.Encode(rec); err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	return nil
}

// Close ends the progress output (a bar's line) and closes metrics.jsonl; a later
// Write opens it again. Closing twice is harmless.
func (b *Bookkeeper) Close() {
	b.prog.Finish()
	if b.file != nil {
		b.file.Close()
		b.file, b.enc = nil, nil
	}
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
