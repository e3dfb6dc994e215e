package localcluster_test

import (
	"context"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/trainer"
)

// Two workers and one coordinator replica train a tiny GPT for three steps on a slice
// of the shipped corpus; every rank ends with the same weights, and the coordinator
// has committed the last step and its checkpoint.
func Example() {
	dir, err := os.MkdirTemp("", "localcluster-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	text := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:20_000]), 0o644); err != nil {
		log.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{
		Inputs: []string{text}, OutDir: data, MinShards: 2,
	}); err != nil {
		log.Fatal(err)
	}

	spec := trainer.DefaultSpec()
	spec.Model = model.Config{Layers: 1, Heads: 2, Embd: 16}
	spec.Data, spec.Out = data, filepath.Join(dir, "run")
	spec.SeqLen, spec.MicroBatch, spec.Streams = 16, 1, 2
	spec.Steps, spec.WarmupSteps = 3, 1
	spec.EvalInterval, spec.EvalBatches, spec.CheckpointInterval = 0, 0, 0

	res, err := localcluster.Run(context.Background(), localcluster.Options{
		Spec: spec, Workers: 2, Dir: dir,
		Replica: coordinator.Config{Settle: 100 * time.Millisecond},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range res.Workers {
		fmt.Printf("rank %d finished at step %d, loss finite: %v\n", w.Rank, w.Step, !math.IsNaN(w.Loss) && !math.IsInf(w.Loss, 0))
	}
	fmt.Println("same weights on every rank:", slices.EqualFunc(res.Workers[0].Params, res.Workers[1].Params,
		func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }))
	cks := res.State.GetCheckpoints()
	fmt.Println("committed step:", res.State.GetProgress().GetStep(), "checkpoint step:", cks[len(cks)-1].GetStep())
	// Output:
	// rank 0 finished at step 3, loss finite: true
	// rank 1 finished at step 3, loss finite: true
	// same weights on every rank: true
	// committed step: 3 checkpoint step: 3
}
