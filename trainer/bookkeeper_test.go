package trainer

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// booksSpec is a job of 5 steps of 2 streams of 2 x 16 tokens that logs every
// second step, writing to out.
func booksSpec(out string) Spec {
	s := DefaultSpec()
	s.Out, s.Steps, s.Streams, s.MicroBatch, s.SeqLen = out, 5, 2, 2, 16
	s.LogInterval, s.EvalInterval, s.CheckpointInterval = 2, 0, 0
	return s
}

// keys returns the sorted keys of a record.
func keys(r map[string]any) string {
	k := make([]string, 0, len(r))
	for name := range r {
		k = append(k, name)
	}
	slices.Sort(k)
	return strings.Join(k, " ")
}

// TestBookkeeperRecordsAndPrints books a 5-step run with a validation set and checks
// metrics.jsonl (its fields, tokens/s on log steps, the validation loss at the last
// step) and the progress lines.
func TestBookkeeperRecordsAndPrints(t *testing.T) {
	spec := booksSpec(filepath.Join(t.TempDir(), "run"))
	var out bytes.Buffer
	books := NewBookkeeper(spec, NewCadence(spec, true), BookkeeperOptions{Progress: &out})
	if err := books.Open(); err != nil {
		t.Fatal(err)
	}
	for step := int64(1); step <= spec.Steps; step++ {
		rec := books.Step(StepDone{Step: step, Tokens: step * 64, Loss: 4 - float64(step)/4, LR: 1e-3, GradNorm: 0.5})
		if books.Cadence().Evaluate(step) {
			books.Evaluated(rec, step, 3.25)
		}
		if err := books.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	books.Close()
	books.Close() // harmless

	const base = "elapsed_s grad_norm loss lr step time tokens"
	want := []string{base, base + " tokens_per_sec", base, base + " tokens_per_sec", base + " tokens_per_sec val_loss"}
	recs := readMetrics(t, spec.Out)
	if len(recs) != len(want) {
		t.Fatalf("metrics.jsonl has %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if got := keys(r); got != want[i] {
			t.Errorf("record %d has fields %q, want %q", i+1, got, want[i])
		}
		step := int64(i + 1)
		if r["step"] != float64(step) || r["tokens"] != float64(step*64) || r["loss"] != 4-float64(step)/4 || r["lr"] != 1e-3 || r["grad_norm"] != 0.5 {
			t.Errorf("record %d: %v", step, r)
		}
		if tps, ok := r["tokens_per_sec"].(float64); ok && !(tps > 0) {
			t.Errorf("record %d: tokens_per_sec %v", step, tps)
		}
		if _, err := time.Parse(time.RFC3339Nano, r["time"].(string)); err != nil {
			t.Errorf("record %d: time: %v", step, err)
		}
	}
	if v := recs[4]["val_loss"]; v != 3.25 {
		t.Errorf("the last record's val_loss is %v, want 3.25", v)
	}

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	prefixes := []string{"step 2/5  loss 3.5000  lr 1.00e-03  norm 0.500 ", "step 4/5  loss 3.0000  lr 1.00e-03  norm 0.500 ",
		"step 5/5  loss 2.7500  lr 1.00e-03  norm 0.500 ", "step 5/5  val loss 3.2500"}
	if len(lines) != len(prefixes) {
		t.Fatalf("progress output has %d lines, want %d:\n%s", len(lines), len(prefixes), out.String())
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Errorf("progress line %d is %q, want it to begin %q", i+1, lines[i], p)
		}
	}
}

// TestBookkeeperClusterProgress checks that a cluster's step shows its ring size in
// place of the learning rate and gradient norm.
func TestBookkeeperClusterProgress(t *testing.T) {
	spec := booksSpec(t.TempDir())
	spec.LogInterval = 1
	var out bytes.Buffer
	books := NewBookkeeper(spec, NewCadence(spec, false), BookkeeperOptions{Progress: &out})
	defer books.Close()
	books.Step(StepDone{Step: 1, Loss: 2, LR: 1e-3, GradNorm: 0.5, Workers: 3})
	line := out.String()
	if !strings.HasPrefix(line, "step 1/5  loss 2.0000 ") || !strings.Contains(line, "  workers 3  ") || strings.Contains(line, " lr ") {
		t.Errorf("cluster progress line %q: want the ring size and no learning rate", line)
	}
}

// TestBookkeeperAppends checks that the first Write creates the run directory, that
// a later Bookkeeper (a resumed run, or a new rank 0) appends to the same file, and
// that a Write after Close opens it again.
func TestBookkeeperAppends(t *testing.T) {
	spec := booksSpec(filepath.Join(t.TempDir(), "a", "b"))
	write := func(books *Bookkeeper, step int64) {
		t.Helper()
		if err := books.Write(books.Step(StepDone{Step: step, Loss: 1})); err != nil {
			t.Fatal(err)
		}
	}
	first := NewBookkeeper(spec, NewCadence(spec, false), BookkeeperOptions{})
	write(first, 1)
	first.Close()
	write(first, 2)
	first.Close()
	second := NewBookkeeper(spec, NewCadence(spec, false), BookkeeperOptions{StartStep: 2})
	write(second, 3)
	second.Close()
	var steps []float64
	for _, r := range readMetrics(t, spec.Out) {
		steps = append(steps, r["step"].(float64))
	}
	if fmt.Sprint(steps) != "[1 2 3]" {
		t.Errorf("metrics.jsonl has steps %v, want [1 2 3]", steps)
	}
}

// TestBookkeeperElapsed checks that elapsed_s counts from the given start.
func TestBookkeeperElapsed(t *testing.T) {
	spec := booksSpec(t.TempDir())
	books := NewBookkeeper(spec, NewCadence(spec, false), BookkeeperOptions{Start: time.Now().Add(-time.Hour)})
	defer books.Close()
	if e := books.Step(StepDone{Step: 1})["elapsed_s"].(float64); e < 3600 || e > 3700 {
		t.Errorf("elapsed_s %v, want an hour", e)
	}
}

// TestValidationLine checks the line printed after an evaluation.
func TestValidationLine(t *testing.T) {
	for _, tc := range []struct {
		step, steps int64
		loss        float64
		want        string
	}{
		{5, 600, 2.41874, "step   5/600  val loss 2.4187"},
		{600, 600, 1.9, "step 600/600  val loss 1.9000"},
		{20, 20, 3, "step 20/20  val loss 3.0000"},
	} {
		if got := ValidationLine(tc.step, tc.steps, tc.loss); got != tc.want {
			t.Errorf("ValidationLine(%d, %d, %v) = %q, want %q", tc.step, tc.steps, tc.loss, got, tc.want)
		}
	}
}

// TestBookkeeperStop checks that the books feed their evaluations and their clock to
// the stopping rules, and print the line of a stop.
func TestBookkeeperStop(t *testing.T) {
	spec := booksSpec(t.TempDir())
	spec.Steps, spec.EvalInterval, spec.EvalBatches, spec.Patience = 20, 1, 1, 2
	var out bytes.Buffer
	books := NewBookkeeper(spec, NewCadence(spec, true), BookkeeperOptions{Progress: &out})
	defer books.Close()
	var stops []string
	for i, vl := range []float64{3, 2.5, 2.6, 2.55} {
		step := int64(i + 1)
		books.Evaluated(books.Step(StepDone{Step: step, Loss: vl}), step, vl)
		stops = append(stops, string(books.Stop(step)))
	}
	if got := fmt.Sprintf("%q", stops); got != `["" "" "" "patience"]` {
		t.Errorf("Stop after each evaluation: %s, want patience after the fourth", got)
	}
	if e := books.Evals(); e.N != 4 || e.Best != 2.5 || e.BestStep != 2 || e.SinceBest != 2 {
		t.Errorf("Evals() = %+v", e)
	}
	books.Stopped(4, StopPatience)
	if want := "step  4/20  stopping: val loss has not improved for 2 evaluations (patience 2); best 2.5000 at step 2\n"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("progress output ends %q, want %q", out.String(), want)
	}

	// The clock: max_time counts from Start, as elapsed_s does.
	spec.Patience, spec.MaxTime = 0, Duration(time.Hour)
	fresh := NewBookkeeper(spec, NewCadence(spec, true), BookkeeperOptions{})
	defer fresh.Close()
	old := NewBookkeeper(spec, NewCadence(spec, true), BookkeeperOptions{Start: time.Now().Add(-time.Hour)})
	defer old.Close()
	if r := fresh.Stop(1); r != "" {
		t.Errorf("a run started now stops: %q", r)
	}
	if r := old.Stop(1); r != StopMaxTime {
		t.Errorf("a run started an hour ago with max_time 1h: Stop = %q, want max_time", r)
	}
}
