package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/metrics/tensorboard/tbtest"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestTensorBoardFlag: `train` writes an event file to <out>/tb by default, one
// event per step after the file_version and START events, and none with
// --tensorboard=false; so does `local` (rank 0 of its cluster). The help names the
// folder and the command to watch it.
func TestTensorBoardFlag(t *testing.T) {
	data := prepareData(t)
	on := filepath.Join(t.TempDir(), "on")
	mustRun(t, tinyTrain(data, on, "--steps", "3")...)
	files, events, err := tbtest.ReadDir(trainer.TensorBoardDir(on))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || len(events) != 2+3 || events[0].FileVersion != "brain.Event:2" || events[4].Step != 3 {
		t.Fatalf("train: event files %v with %d events, want one of file_version, START and steps 1-3", files, len(events))
	}
	if _, ok := events[4].Value("val/loss"); !ok {
		t.Errorf("train: the last step's event lacks val/loss: %+v", events[4])
	}

	off := filepath.Join(t.TempDir(), "off")
	mustRun(t, tinyTrain(data, off, "--steps", "2", "--tensorboard=false")...)
	if _, err := os.Stat(trainer.TensorBoardDir(off)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("train --tensorboard=false: %s: %v, want it absent", trainer.TensorBoardDir(off), err)
	}

	dir := t.TempDir()
	mustRun(t, "local", "--data", data, "--dir", dir, "--steps", "2", "--sample-tokens", "0", "--tensorboard=false",
		"--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "2", "--eval-batches", "1")
	if _, err := os.Stat(filepath.Join(dir, "run", "metrics.jsonl")); err != nil {
		t.Errorf("local: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "tb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local --tensorboard=false: run/tb: %v, want it absent", err)
	}

	for _, cmd := range []string{"train", "local", "worker"} {
		help := mustRun(t, cmd, "--help")
		if !strings.Contains(help, "--tensorboard") || !strings.Contains(help, "tensorboard --logdir <out>/tb") {
			t.Errorf("%s --help lacks --tensorboard and how to watch it:\n%s", cmd, help)
		}
	}
}
