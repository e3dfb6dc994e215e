package worker

import (
	"context"
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
