package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// FuzzParseRun: a metrics.jsonl of any bytes is refused with an error naming the
// file, or gives one train point per distinct step, in step order, with at most as
// many validation and learning-rate points.
func FuzzParseRun(f *testing.F) {
	f.Add([]byte(`{"step":1,"loss":4.2,"lr":0.001}` + "\n" + `{"step":2,"loss":3.9,"val_loss":4.0}` + "\n"))
	f.Add([]byte(`{"step":2,"loss":3}` + "\n" + `{"step":1,"loss":4}` + "\n" + `{"step":2,"loss":2.5}` + "\n"))
	f.Add([]byte(`{"step":1}` + "\n"))
	f.Add([]byte("not json\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		run, err := parseRun("run/metrics.jsonl", bytes.NewReader(b))
		if err != nil {
			if !strings.Contains(err.Error(), "run/metrics.jsonl") {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		if len(run.train) == 0 || len(run.val) > len(run.train) || len(run.lr) > len(run.train) {
			t.Fatalf("%d train, %d val, %d lr points", len(run.train), len(run.val), len(run.lr))
		}
		for i := 1; i < len(run.train); i++ {
			if !(run.train[i-1].X < run.train[i].X) && !math.IsNaN(run.train[i].X) {
				t.Fatalf("steps out of order: %v then %v", run.train[i-1].X, run.train[i].X)
			}
		}
	})
}
