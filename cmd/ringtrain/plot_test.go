package main

import (
	"fmt"
	"image"
	_ "image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "metrics.jsonl")
	var b strings.Builder
	for s := 1; s <= 50; s++ {
		fmt.Fprintf(&b, `{"step":%d,"loss":%g,"lr":0.001,"generation":1,"world_size":2`, s, 4.0/float64(s)+1)
		if s%10 == 0 {
			fmt.Fprintf(&b, `,"val_loss":%g`, 4.0/float64(s)+1.2)
		}
		b.WriteString("}\n")
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "loss.png")
	out := mustRun(t, "plot", in, "-o", png)
	if !strings.Contains(out, "wrote "+png) {
		t.Errorf("plot output %q", out)
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, format, err := image.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", png, err)
	}
	if format != "png" || cfg.Width == 0 || cfg.Height == 0 {
		t.Errorf("%s: format %s, %dx%d", png, format, cfg.Width, cfg.Height)
	}
}

func TestPlotBadInput(t *testing.T) {
	dir := t.TempDir()
	png := filepath.Join(dir, "loss.png")
	missing := filepath.Join(dir, "nope.jsonl")
	if _, err := ringtrain(t, "plot", missing, "-o", png); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v, want one naming %s", err, missing)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"step\":1,\"loss\":2}\n{\"step\":2,\"lo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ringtrain(t, "plot", bad, "-o", png); err == nil || !strings.Contains(err.Error(), bad+":2:") {
		t.Errorf("corrupt line: error %v, want one naming %s:2", err, bad)
	}
	noLoss := filepath.Join(dir, "noloss.jsonl")
	if err := os.WriteFile(noLoss, []byte("{\"step\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ringtrain(t, "plot", noLoss, "-o", png); err == nil || !strings.Contains(err.Error(), noLoss+":1:") {
		t.Errorf("record without loss: error %v, want one naming %s:1", err, noLoss)
	}
	if _, err := os.Stat(png); err == nil {
		t.Errorf("a failed plot wrote %s", png)
	}
}

// writeMetrics writes the records of a run's metrics.jsonl: for each segment (a
// start of the run, then resumes), the steps from..to with loss base-step/10, the
// learning rate and, every fifth step, a validation loss.
func writeMetrics(t *testing.T, path string, segments ...[3]float64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, seg := range segments {
		for s := seg[0]; s <= seg[1]; s++ {
			fmt.Fprintf(&b, `{"step":%g,"loss":%g,"lr":%g`, s, seg[2]-s/10, 1e-3*s/(s+5))
			if int(s)%5 == 0 {
				fmt.Fprintf(&b, `,"val_loss":%g`, seg[2]-s/10+0.5)
			}
			b.WriteString("}\n")
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestParseRunResumed reads a run resumed twice from earlier checkpoints: each step
// once, from its last record, in step order.
func TestParseRunResumed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "metrics.jsonl")
	writeMetrics(t, path, [3]float64{1, 12, 10}, [3]float64{6, 15, 20}, [3]float64{11, 18, 30})
	run, err := readRun(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.train) != 18 || len(run.lr) != 18 {
		t.Fatalf("%d train and %d lr points, want one per step 1..18", len(run.train), len(run.lr))
	}
	for i, p := range run.train {
		step := float64(i + 1)
		base := 10.0
		switch {
		case step >= 11:
			base = 30
		case step >= 6:
			base = 20
		}
		if p.X != step || p.Y != base-step/10 {
			t.Errorf("point %d: step %v loss %v, want step %v loss %v (the last record of the step)", i, p.X, p.Y, step, base-step/10)
		}
	}
	var vals []string
	for _, p := range run.val {
		vals = append(vals, fmt.Sprintf("%g:%g", p.X, p.Y))
	}
	if got, want := strings.Join(vals, " "), "5:10 10:19.5 15:29 "; got+" " != want {
		t.Errorf("val points %s, want %s", got, want)
	}
}

func TestRunNames(t *testing.T) {
	for _, c := range []struct{ paths, want []string }{
		{[]string{"/x/r1/metrics.jsonl"}, []string{"r1"}},
		{[]string{"/x/r1/metrics.jsonl", "/x/r2/metrics.jsonl"}, []string{"r1", "r2"}},
		{[]string{"/a/run/metrics.jsonl", "/b/run/metrics.jsonl"}, []string{"a/run", "b/run"}},
		{[]string{"/a/run/metrics.jsonl", "/a/run/metrics.jsonl"}, []string{"/a/run", "/a/run"}},
	} {
		if got := runNames(c.paths); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("runNames(%v) = %v, want %v", c.paths, got, c.want)
		}
	}
}

// TestPreciseTicks: over narrow and wide ranges, loss-like and learning-rate-like,
// the labelled ticks lie in the range, read back as their values, and differ.
func TestPreciseTicks(t *testing.T) {
	for _, r := range [][2]float64{
		{6.88, 6.97}, {6.9, 6.9004}, {0, 600}, {1, 2000}, {1e-4, 1e-3}, {3e-5, 6e-4}, {0, 1e-6},
		{-1, 1}, {1234.5, 1234.56}, {1e6, 3e6}, {0.1, 0.100001}, {2.5, 11},
	} {
		ticks := (preciseTicks{}).Ticks(r[0], r[1])
		seen := map[string]bool{}
		var labels []string
		for _, tk := range ticks {
			if tk.Value < r[0]-1e-12 || tk.Value > r[1]+1e-12 {
				t.Errorf("%v: tick %v outside the range", r, tk.Value)
			}
			if tk.Label == "" {
				continue
			}
			labels = append(labels, tk.Label)
			if seen[tk.Label] {
				t.Errorf("%v: label %q twice in %v", r, tk.Label, labels)
			}
			seen[tk.Label] = true
			v, err := strconv.ParseFloat(tk.Label, 64)
			if err != nil || math.Abs(v-tk.Value) > (r[1]-r[0])*1e-6 {
				t.Errorf("%v: label %q for the value %v", r, tk.Label, tk.Value)
			}
		}
		if len(labels) < 3 || len(labels) > 11 {
			t.Errorf("%v: labels %v, want 3 to 11", r, labels)
		}
	}
	if got := (preciseTicks{}).Ticks(6.88, 6.97); got[0].Label != "6.88" {
		t.Errorf("ticks of [6.88, 6.97] start %+v, want 6.88 (two decimals)", got[0])
	}
}

// TestPlotRuns overlays two runs, one resumed, with the learning-rate panel: an
// SVG names both runs and the panel; without --lr it has no panel; a PNG of both
// gets the taller default size.
func TestPlotRuns(t *testing.T) {
	dir := t.TempDir()
	r1, r2 := filepath.Join(dir, "lr-1e-3"), filepath.Join(dir, "lr-3e-4", "metrics.jsonl")
	writeMetrics(t, filepath.Join(r1, "metrics.jsonl"), [3]float64{1, 40, 7})
	writeMetrics(t, r2, [3]float64{1, 30, 7.2}, [3]float64{21, 50, 7.1})

	svg := filepath.Join(dir, "cmp.svg")
	mustRun(t, "plot", r1, r2, "-o", svg)
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"learning rate", "lr-1e-3 train", "lr-3e-4 train", "lr-1e-3 val", "lr-3e-4 val", ">Loss<"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", svg, want)
		}
	}
	mustRun(t, "plot", r1, r2, "--lr=false", "-o", svg)
	if b, err = os.ReadFile(svg); err != nil || strings.Contains(string(b), "learning rate") || !strings.Contains(string(b), "lr-3e-4 train") {
		t.Errorf("--lr=false: %v, learning-rate panel drawn %v", err, strings.Contains(string(b), "learning rate"))
	}

	runs := []*runSeries{}
	for _, p := range []string{filepath.Join(r1, "metrics.jsonl"), r2} {
		r, err := readRun(p)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if panels, err := figure(runs, true); err != nil || len(panels) != 2 || panels[0].X.Max != 50 || panels[1].X.Max != 50 {
		t.Errorf("figure: %d panels, err %v; want the loss and learning-rate panels over steps 1..50", len(panels), err)
	}
	runs[0].lr, runs[1].lr = nil, nil
	if panels, err := figure(runs, true); err != nil || len(panels) != 1 {
		t.Errorf("figure of runs without a learning rate: %d panels, err %v; want the loss alone", len(panels), err)
	}

	png := filepath.Join(dir, "cmp.png")
	mustRun(t, "plot", r1, r2, "-o", png)
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, format, err := image.DecodeConfig(f)
	if err != nil || format != "png" || cfg.Width == 0 || math.Abs(float64(cfg.Height*16-cfg.Width*15)) > 32 {
		t.Errorf("%s: %v, format %s, %dx%d; want a 16 x 15 cm PNG", png, err, format, cfg.Width, cfg.Height)
	}
	if _, err := ringtrain(t, "plot", r1, "-o", filepath.Join(dir, "noext")); err == nil || !strings.Contains(err.Error(), "-o") {
		t.Errorf("-o without an extension: error %v", err)
	}
}
