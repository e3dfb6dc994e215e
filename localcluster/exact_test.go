package localcluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

// weightsDigest is the sha256 of a parameter slab's bits.
func weightsDigest(p []float32) string {
	h := sha256.New()
	b := make([]byte, 4)
	for _, v := range p {
		binary.LittleEndian.PutUint32(b, math.Float32bits(v))
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}

// TestExactWorldSizes: in exact mode, the same job of 12 streams trained by 1, 2, 3
// and 4 workers over loopback gRPC ends with one weights digest, on every rank, and
// with the loss of every world size bit for bit.
func TestExactWorldSizes(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:30_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: data, MinShards: 12}); err != nil {
		t.Fatal(err)
	}
	spec := trainer.DefaultSpec()
	spec.Model = model.Config{Layers: 2, Heads: 2, Embd: 16}
	spec.Data = data
	spec.SeqLen, spec.MicroBatch, spec.Streams = 16, 1, 12
	spec.Steps, spec.WarmupSteps, spec.Exact = 10, 2, true
	spec.EvalInterval, spec.EvalBatches, spec.CheckpointInterval = 0, 0, 0
	var want string
	var wantLoss float64
	for n := 1; n <= 4; n++ {
		spec.Out = filepath.Join(dir, fmt.Sprintf("run%d", n))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		// Small buckets: several integer reductions per step, overlapping backward.
		res, err := Run(ctx, Options{Spec: spec, Workers: n, Dir: dir, Worker: worker.Config{BucketBytes: 4 << 10}})
		cancel()
		if err != nil {
			t.Fatalf("%d workers: %v", n, err)
		}
		if len(res.Workers) != n {
			t.Fatalf("%d workers: %d results", n, len(res.Workers))
		}
		for _, r := range res.Workers {
			got := weightsDigest(r.Params)
			if want == "" {
				want, wantLoss = got, r.Loss
			}
			if got != want || r.Loss != wantLoss {
				t.Errorf("%d workers: rank %d ends with weights %s and loss %v; 1 worker with %s and %v", n, r.Rank, got, r.Loss, want, wantLoss)
			}
		}
		t.Logf("%d workers: weights %s, loss %.6f", n, want, wantLoss)
	}
}
