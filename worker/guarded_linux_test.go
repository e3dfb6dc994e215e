//go:build linux

package worker_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tensor"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

// TestGuardedBackendTraining runs a short job on the guarded backend, whose buffers
// fault when host code touches them outside a backend call: once through the
// single-process trainer, whose weights must be the CPU run's bit for bit, and once
// on a two-worker cluster sharing one guarded backend, whose workers must end
// equivalent to the single process.
func TestGuardedBackendTraining(t *testing.T) {
	data := prepareData(t)
	wantParams, wantLoss := referenceRun(t, data)

	ref, err := trainer.Run(context.Background(), tinySpec(data, t.TempDir()), trainer.RunOptions{Backend: tensor.NewGuarded()})
	if err != nil {
		t.Fatalf("guarded run: %v", err)
	}
	ck, err := model.LoadCheckpoint(ref.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ck.Params {
		if math.Float32bits(v) != math.Float32bits(wantParams[i]) {
			t.Fatalf("parameter %d: %v on the guarded backend, %v on the CPU", i, v, wantParams[i])
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := worker.NewTestLogger(t)
	replica := coordinator.TestConfig()
	replica.Logger = log
	spec := tinySpec(data, t.TempDir())
	res, err := localcluster.Run(ctx, localcluster.Options{
		Spec: spec, Workers: 2, Dir: t.TempDir(),
		Replica: replica,
		Client:  coordinator.ClientOptions{Logger: log, AttemptTimeout: time.Second},
		Worker:  worker.Config{Logger: log, RetryDelay: 200 * time.Millisecond, Backend: tensor.NewGuarded()},
	})
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	checkEquivalent(t, res.Workers, wantParams, wantLoss)
}
