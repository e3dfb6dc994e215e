package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// The tests in this file run workers against coordinator.Inmem: the coordinator's
// state machine and planner without Raft, so they need no cluster and start at
// once. The tests against a Raft cluster (worker_test.go, metrics_test.go,
// reporter_test.go) stay beside them. The package's TestMain checks that no test
// leaks a goroutine.

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInmemRun: one and two workers against the in-memory coordinator train the
// single process's weights (up to summation order), bit-identical across ranks; the
// coordinator records the last step and checkpoint, and every worker has left.
func TestInmemRun(t *testing.T) {
	data := prepareData(t)
	wantParams, wantLoss := referenceRun(t, data)
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
			co := coordinator.NewInmem(coordinator.InmemOptions{})
			spec := tinySpec(data, t.TempDir())
			res := runWorkers(t, co, spec, n, nil)
			checkEquivalent(t, res, wantParams, wantLoss)
			st := co.State()
			checkFinished(t, st, spec)
			if len(st.GetWorkers()) != 0 {
				t.Errorf("workers %v still registered after the job", st.GetWorkers())
			}
		})
	}
}

// TestInmemLeave: of two workers training, one stops (its context ends) and leaves;
// the other takes every stream in the next generation and finishes the job alone,
// and the audit proves every step summed each stream exactly once.
func TestInmemLeave(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps, spec.CheckpointInterval = 100, 50
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := jobspec.Encode(spec, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	log := newTestLogger(t)
	var (
		results [2]*Result
		errs    [2]error
		audits  [2]lockedBuffer
		wg      sync.WaitGroup
	)
	ctx1, stop1 := context.WithCancel(ctx)
	defer stop1()
	for i, wctx := range []context.Context{ctx, ctx1} {
		w, err := New(Config{ID: fmt.Sprintf("w%d", i), Coordinators: co, Logger: log, RetryDelay: 200 * time.Millisecond,
			Audit: &audits[i]})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i], errs[i] = w.Run(wctx) })
	}
	var pair uint64 // the generation in which both trained
	waitFor(t, "a step of the generation of both", func() bool {
		st := co.State()
		if len(st.GetPlan().GetMembers()) == 2 && st.GetProgress().GetGeneration() == st.GetPlan().GetGeneration() {
			pair = st.GetPlan().GetGeneration()
		}
		return pair != 0 || st.GetProgress().GetStep() == spec.Steps
	})
	stop1()
	wg.Wait()
	if errs[1] == nil {
		t.Skipf("the job finished before w1 stopped (generation %d)", results[1].Generation)
	}
	if !errors.Is(errs[1], context.Canceled) {
		t.Fatalf("w1: %v, want context.Canceled", errs[1])
	}
	if errs[0] != nil {
		t.Fatalf("w0: %v", errs[0])
	}
	if r := results[0]; r.Step != spec.Steps || r.Rank != 0 || r.Generation <= pair {
		t.Fatalf("w0 finished at step %d as rank %d of generation %d; want step %d, rank 0, after generation %d",
			r.Step, r.Rank, r.Generation, spec.Steps, pair)
	}
	st := co.State()
	checkFinished(t, st, spec)
	if len(st.GetWorkers()) != 0 {
		t.Errorf("workers %v still registered after the job", st.GetWorkers())
	}
	rep := verifyAudits(t, audits[:], spec.Streams)
	if rep.Steps != spec.Steps || rep.Workers != 1 || rep.Generations < 2 || rep.Final != checksum(results[0].Params) {
		t.Fatalf("audit report %+v", rep)
	}
	t.Logf("audit: %+v", rep)
}

// TestInmemLifecycle: a worker registers and waits while the job lacks workers;
// when the coordinator forgets it (its lease expired) its next heartbeat registers
// it again; when its context ends it leaves.
func TestInmemLifecycle(t *testing.T) {
	co := coordinator.NewInmem(coordinator.InmemOptions{Lease: 150 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := jobspec.Encode(tinySpec(t.TempDir(), t.TempDir()), 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{ID: "w0", Coordinators: co, Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var runErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, runErr = w.Run(rctx) })

	registered := func() *pb.Worker {
		ws := co.State().GetWorkers()
		if len(ws) != 1 {
			return nil
		}
		return ws[0]
	}
	waitFor(t, "w0 to register", func() bool { return registered() != nil })
	first := registered()
	if first.GetId() != "w0" || first.GetAddress() != w.Addr() {
		t.Fatalf("registered %v, want w0 at %s", first, w.Addr())
	}
	if err := co.Expire("w0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "w0 to register again", func() bool {
		again := registered()
		return again != nil && again.GetJoinedAt() > first.GetJoinedAt()
	})
	stop()
	wg.Wait()
	if !errors.Is(runErr, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", runErr)
	}
	if ws := co.State().GetWorkers(); len(ws) != 0 {
		t.Fatalf("workers %v still registered after w0 stopped", ws)
	}
}
