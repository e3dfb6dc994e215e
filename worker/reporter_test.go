package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// TestReporterRetriesCommits: a checkpoint commit made while the coordinator is
// down for longer than a call's patience is kept and committed once it is back.
func TestReporterRetriesCommits(t *testing.T) {
	c := coordinator.MakeCluster(t, 1)
	c.Leader()
	ctx := c.Ctx(30 * time.Second)
	cl := c.Client()
	spec := tinySpec(t.TempDir(), t.TempDir())
	job, err := jobspec.Encode(spec, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: "w0", Address: "127.0.0.1:1", Device: "cpu"}); err != nil {
		t.Fatal(err)
	}
	plan := c.WaitPlan("w0 a member", func(p *pb.Plan) bool { return len(p.GetMembers()) == 1 })

	rep := newReporter(cl, slog.New(slog.DiscardHandler))
	rep.patience, rep.pause = 300*time.Millisecond, 100*time.Millisecond
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { rep.run(rctx) })
	defer func() { cancel(); wg.Wait() }()

	c.Kill(0)
	rep.commit(&pb.CommitCheckpointRequest{WorkerId: "w0", Generation: plan.GetGeneration(), Step: 2,
		Location: "run/ckpt/step-000002", Sha256: "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"})
	time.Sleep(time.Second) // several calls' patience: the commit is set aside and retried
	c.Restart(0)
	c.Leader()
	c.WaitFor("the commit to land", func() bool {
		st := c.Node(0).State()
		return len(st.GetCheckpoints()) == 1 && st.GetCheckpoints()[0].GetStep() == 2
	})
}

// TestReporterInmem: the reporter records progress and commits checkpoints, in
// order; a commit the coordinator refuses for good (a generation that has passed)
// is dropped, not kept for another try.
func TestReporterInmem(t *testing.T) {
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := jobspec.Encode(tinySpec(t.TempDir(), t.TempDir()), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	if _, err := co.Register(ctx, &pb.RegisterRequest{WorkerId: "w0", Address: "127.0.0.1:1", Device: "cpu"}); err != nil {
		t.Fatal(err)
	}
	gen := co.State().GetPlan().GetGeneration()
	const digest = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	commit := func(gen uint64, step int64) *pb.CommitCheckpointRequest {
		return &pb.CommitCheckpointRequest{WorkerId: "w0", Generation: gen, Step: step,
			Location: fmt.Sprintf("run/ckpt/step-%06d", step), Sha256: digest}
	}
	if _, err := co.CommitCheckpoint(ctx, commit(gen-1, 2)); !permanent(err) {
		t.Fatalf("commit of a passed generation: %v, want a permanent error", err)
	}

	rep := newReporter(co, slog.New(slog.DiscardHandler))
	rep.patience, rep.pause = 300*time.Millisecond, 50*time.Millisecond
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { rep.run(rctx) })
	rep.report(&pb.ReportProgressRequest{WorkerId: "w0", Generation: gen, Step: 3, Loss: 2.5})
	rep.commit(commit(gen-1, 2))
	rep.commit(commit(gen, 2))
	rep.commit(commit(gen, 4))
	waitFor(t, "the commits to land", func() bool {
		st := co.State()
		return st.GetProgress().GetStep() == 3 && len(st.GetCheckpoints()) == 2 && st.GetCheckpoints()[1].GetStep() == 4
	})
	stop()
	wg.Wait()
	if cks := co.State().GetCheckpoints(); cks[0].GetStep() != 2 || cks[0].GetGeneration() != gen {
		t.Errorf("checkpoints %v, want steps 2 and 4 of generation %d", cks, gen)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.commits) != 0 {
		t.Errorf("commits %v kept for another try, want none", rep.commits)
	}
}

// The commits of a replaced job do not count as commits of the job that replaced it
// (they would let the new job prune its uncommitted checkpoints).
func TestReporterCommittedStepPerJob(t *testing.T) {
	r := newReporter(nil, nil)
	for _, c := range []struct {
		version uint64
		step    int64
	}{{1, 10}, {1, 40}, {2, 4}, {1, 50}, {2, 8}} {
		r.accepted(&pb.CommitCheckpointRequest{JobVersion: c.version, Step: c.step})
	}
	if got := r.committedStep(2); got != 8 {
		t.Errorf("job version 2: committed step %d, want 8", got)
	}
	if got := r.committedStep(1); got != 0 {
		t.Errorf("replaced job version 1: committed step %d, want 0", got)
	}
}
