package worker

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestInmemExactWorldSizes: in exact mode 1, 2, 3 and 4 workers over the same 12
// streams end with the very bits of the single-process trainer in exact mode, weights
// and loss alike, although each spreads the streams differently over its ranks.
func TestInmemExactWorldSizes(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Exact, spec.Steps = true, 6
	ref, err := trainer.Run(context.Background(), spec, trainer.RunOptions{})
	if err != nil {
		t.Fatalf("reference run: %v", err)
	}
	ck, err := model.LoadCheckpoint(ref.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
			spec := spec
			spec.Out = t.TempDir()
			res := runWorkers(t, coordinator.NewInmem(coordinator.InmemOptions{}), spec, n, nil)
			for r, got := range res {
				for i, v := range got.Params {
					if math.Float32bits(v) != math.Float32bits(ck.Params[i]) {
						t.Fatalf("rank %d differs from the single process at parameter %d: %v vs %v", r, i, v, ck.Params[i])
					}
				}
				if got.Loss != ref.TrainLoss {
					t.Errorf("rank %d: final loss %v, single process %v", r, got.Loss, ref.TrainLoss)
				}
			}
		})
	}
}
