package bench

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/model"
)

// TestTrain times two steps of a one-layer model.
func TestTrain(t *testing.T) {
	var out bytes.Buffer
	res, err := Train(context.Background(), TrainOptions{Model: model.Config{Layers: 1, Heads: 2, Embd: 32, VocabSize: 20},
		Seq: 16, Batch: 2, Warmup: 1, Steps: 2, Threads: 2, PeakTime: 10 * time.Millisecond, Seed: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	// Random tokens over 20 symbols: the loss starts near ln 20.
	if res.Params <= 0 || math.Abs(res.FirstLoss-math.Log(20)) > 0.5 || math.IsNaN(res.Loss) ||
		res.TokensPerSecond <= 0 || res.PeakGFLOPS <= 0 || res.MFU <= 0 {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{"model: layers 1 heads 2 embd 32 seq 16 batch 2 vocab 20", "tokens/s", "ms/step", "MFU", "peak RSS", "allocations"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if _, err := Train(context.Background(), TrainOptions{Seq: 0, Batch: 1, Steps: 1, Threads: 1}, &out); err == nil {
		t.Error("no error for Seq 0")
	}
}

// TestTrainExact compares a few steps of the float32 and exact sums of three
// streams: both run, and the exact weights stay close to the float32 ones.
func TestTrainExact(t *testing.T) {
	var out bytes.Buffer
	res, err := TrainExact(context.Background(), TrainOptions{Model: model.Config{Layers: 1, Heads: 2, Embd: 32, VocabSize: 20},
		Seq: 16, Batch: 3, Streams: 3, Warmup: 1, Steps: 2, Threads: 2, Seed: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if res.Float <= 0 || res.Exact <= 0 || res.RelL2 > 1e-4 || res.ExactLossDiff > 1e-4 {
		t.Errorf("result %+v", res)
	}
	if !strings.Contains(out.String(), "exact/float") {
		t.Errorf("report lacks the ratio:\n%s", out.String())
	}
	if _, err := TrainExact(context.Background(), TrainOptions{Seq: 16, Batch: 4, Streams: 3, Steps: 1, Threads: 1}, &out); err == nil {
		t.Error("no error for a batch that 3 streams do not divide")
	}
}
