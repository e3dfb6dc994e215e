package trainer

import (
	"context"
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

// TestSFTPackedTrainsEachExampleAlone checks that the trainer trains a packed dataset
// through its example starts: the loss of a step over packed rows equals the sum of
// the losses of the same examples each alone in a padded row, and the step's trained
// targets (from the row counts) are those the rows train.
func TestSFTPackedTrainsEachExampleAlone(t *testing.T) {
	const T = 160
	data := prepareSFTDataWith(t, 120, shard.SFTOptions{SeqLen: T, MinShards: 3, Pack: true})
	spec := sftSpec(data, t.TempDir())
	spec.SeqLen = T
	tr, p := newTrainer(t, spec)
	if tr.packed == nil {
		t.Fatal("the trainer of a packed dataset reads no example starts")
	}
	ctx := context.Background()
	got, err := tr.Gradients(ctx, 0, spec.AllStreams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := model.New(tr.Model.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	copy(alone.Params.Slab, tr.Model.Params.Slab)
	b := spec.MicroBatch
	inputs, targets, start := make([]int32, b*T), make([]int32, b*T), make([]int32, b*T)
	row, rowTg := make([]int32, T), make([]int32, T)
	var want float64
	trained, examples := 0, 0
	for stream := range spec.Streams {
		if err := p.Loader.BatchPacked(ctx, stream, 0, inputs, targets, start); err != nil {
			t.Fatal(err)
		}
		for r := range b {
			for lo := 0; lo < T; {
				hi := lo + 1
				for hi < T && int(start[r*T+hi]) == lo {
					hi++
				}
				for i := range T {
					row[i], rowTg[i] = int32(p.Tokenizer.EOT()), -1
				}
				copy(row, inputs[r*T+lo:r*T+hi])
				copy(rowTg, targets[r*T+lo:r*T+hi])
				sum, n, err := alone.Forward(row, rowTg, 1, T, true)
				if err != nil {
					t.Fatal(err)
				}
				want += sum
				trained += n
				examples++
				lo = hi
			}
		}
	}
	if examples <= spec.Streams*b*2 {
		t.Fatalf("%d examples (padding included) in %d rows: the rows are not packed", examples, spec.Streams*b)
	}
	if math.Abs(got-want) > 1e-5*math.Abs(want) {
		t.Errorf("packed step loss sum %.9g, the examples alone %.9g", got, want)
	}
	if n := tr.GlobalTargets(0); n != trained {
		t.Errorf("GlobalTargets = %d, the rows train %d", n, trained)
	}
}
