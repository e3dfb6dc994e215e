package main

import (
	"fmt"
	"image"
	_ "image/png"
	"os"
	"path/filepath"
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
