package coordinator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

const testDigest = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

func inmemWithJob(t *testing.T, opts InmemOptions, minW, maxW int32) (*Inmem, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	c := NewInmem(opts)
	if err := c.SubmitJob(ctx, &pb.SubmitJobRequest{Job: &pb.JobSpec{Streams: 4, MinWorkers: minW, MaxWorkers: maxW, Steps: 10}}); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

func inmemRegister(t *testing.T, ctx context.Context, c *Inmem, id string) {
	t.Helper()
	if _, err := c.Register(ctx, &pb.RegisterRequest{WorkerId: id, Address: id + ":7100", Device: "cpu"}); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

// TestInmemPlans: registrations and departures make generations as the planner
// says, an unchanged re-registration makes none, and WatchPlan delivers each newer
// plan once, in order.
func TestInmemPlans(t *testing.T) {
	c, ctx := inmemWithJob(t, InmemOptions{}, 2, 2)
	if p := c.State().GetPlan(); p.GetGeneration() != 1 || p.GetState() != pb.PlanState_PLAN_STATE_WAITING {
		t.Fatalf("after the job: plan %v, want a WAITING generation 1", p)
	}
	var (
		mu   sync.Mutex
		seen []*pb.Plan
	)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := c.WatchPlan(wctx, "w0", 0, func(p *pb.Plan) error {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WatchPlan returned %v, want context.Canceled", err)
		}
	})
	inmemRegister(t, ctx, c, "w0")
	inmemRegister(t, ctx, c, "w1")
	inmemRegister(t, ctx, c, "w1") // unchanged: no new generation
	inmemRegister(t, ctx, c, "w2") // standby
	p := c.State().GetPlan()
	// Generations: 1 waiting for workers, 2 waiting with w0, 3 w0 and w1, 4 with w2.
	if p.GetGeneration() != 4 || !slices.Equal(p.GetMembers(), []string{"w0", "w1"}) || !slices.Equal(p.GetStandby(), []string{"w2"}) {
		t.Fatalf("plan %v, want generation 4 with members w0, w1 and standby w2", p)
	}
	if err := c.Leave(ctx, &pb.LeaveRequest{WorkerId: "w0"}); err != nil {
		t.Fatal(err)
	}
	p = c.State().GetPlan()
	if p.GetGeneration() != 5 || !slices.Equal(p.GetMembers(), []string{"w1", "w2"}) {
		t.Fatalf("after w0 left: plan %v, want generation 5 with members w1, w2", p)
	}
	if err := c.Leave(ctx, &pb.LeaveRequest{WorkerId: "w0"}); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("leave again: %v, want ErrUnknownWorker", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		last := uint64(0)
		if n > 0 {
			last = seen[n-1].GetGeneration()
		}
		mu.Unlock()
		if last == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher saw up to generation %d, want 5", last)
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	wg.Wait()
	for i := 1; i < len(seen); i++ {
		if seen[i].GetGeneration() <= seen[i-1].GetGeneration() {
			t.Fatalf("generation %d delivered after %d", seen[i].GetGeneration(), seen[i-1].GetGeneration())
		}
	}
}

// TestInmemReports: progress and checkpoint commits are checked and recorded by the
// state machine, with its sentinels.
func TestInmemReports(t *testing.T) {
	c, ctx := inmemWithJob(t, InmemOptions{}, 1, 1)
	inmemRegister(t, ctx, c, "w0")
	inmemRegister(t, ctx, c, "w1") // standby
	gen := c.State().GetPlan().GetGeneration()
	if _, err := c.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w0", Generation: gen, Step: 3, Loss: 2.5}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w0", Generation: gen - 1, Step: 4}); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("progress of an older generation: %v, want ErrStaleGeneration", err)
	}
	if _, err := c.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w1", Generation: gen, Step: 4}); !errors.Is(err, ErrNotMember) {
		t.Errorf("progress of a standby worker: %v, want ErrNotMember", err)
	}
	ck := &pb.CommitCheckpointRequest{WorkerId: "w0", Generation: gen, Step: 2, Location: "run/ckpt/step-000002", Sha256: testDigest}
	for range 2 { // the same commit again is accepted
		if _, err := c.CommitCheckpoint(ctx, ck); err != nil {
			t.Fatal(err)
		}
	}
	ck.Sha256 = strings.Repeat("0", 64)
	if _, err := c.CommitCheckpoint(ctx, ck); !errors.Is(err, ErrConflict) {
		t.Errorf("another digest for step 2: %v, want ErrConflict", err)
	}
	st := c.State()
	if st.GetProgress().GetStep() != 3 || len(st.GetCheckpoints()) != 1 || st.GetCheckpoints()[0].GetSha256() != testDigest {
		t.Errorf("progress %v, checkpoints %v", st.GetProgress(), st.GetCheckpoints())
	}
	if _, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: "w9"}); !errors.Is(err, ErrUnknownWorker) {
		t.Errorf("heartbeat of an unknown worker: %v, want ErrUnknownWorker", err)
	}
	if hb, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: "w0"}); err != nil || hb.GetGeneration() != gen {
		t.Errorf("heartbeat: %v, %v", hb, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.ReportProgress(done, &pb.ReportProgressRequest{WorkerId: "w0", Generation: gen, Step: 5}); !errors.Is(err, context.Canceled) {
		t.Errorf("report with an ended context: %v, want context.Canceled", err)
	}
}

// TestInmemPeerLostAndExpire: a peer-lost report removes the member it names at once
// and holds it off; a stale report is refused; Expire removes a worker as an expired
// lease does, and it may register again at once.
func TestInmemPeerLostAndExpire(t *testing.T) {
	c, ctx := inmemWithJob(t, InmemOptions{HoldOff: time.Minute}, 1, 0)
	inmemRegister(t, ctx, c, "w0")
	inmemRegister(t, ctx, c, "w1")
	gen := c.State().GetPlan().GetGeneration()
	if err := c.ReportPeerLost(ctx, &pb.ReportPeerLostRequest{WorkerId: "w0", Generation: gen, PeerId: "w1", Error: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	p := c.State().GetPlan()
	if p.GetGeneration() != gen+1 || !slices.Equal(p.GetMembers(), []string{"w0"}) {
		t.Fatalf("after the report: plan %v, want generation %d with w0 alone", p, gen+1)
	}
	if _, err := c.Register(ctx, &pb.RegisterRequest{WorkerId: "w1", Address: "w1:7100"}); !errors.Is(err, ErrHeldOff) {
		t.Errorf("register of a reported worker: %v, want ErrHeldOff", err)
	}
	if err := c.ReportPeerLost(ctx, &pb.ReportPeerLostRequest{WorkerId: "w1", Generation: gen, PeerId: "w0"}); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("report of an older generation: %v, want ErrStaleGeneration", err)
	}
	if err := c.Expire("w0"); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); len(st.GetWorkers()) != 0 || st.GetPlan().GetState() != pb.PlanState_PLAN_STATE_WAITING {
		t.Fatalf("after w0 expired: workers %v, plan %v", st.GetWorkers(), st.GetPlan())
	}
	inmemRegister(t, ctx, c, "w0")
	if p := c.State().GetPlan(); !slices.Equal(p.GetMembers(), []string{"w0"}) {
		t.Fatalf("after w0 registered again: plan %v", p)
	}
}

// TestInmemRegisterZone: the zone of a registration reaches the worker's record and
// orders the plan's ring.
func TestInmemRegisterZone(t *testing.T) {
	c, ctx := inmemWithJob(t, InmemOptions{}, 3, 3)
	for _, w := range []struct{ id, zone string }{{"w0", "a"}, {"w1", "b"}, {"w2", "a"}} {
		if _, err := c.Register(ctx, &pb.RegisterRequest{WorkerId: w.id, Address: w.id + ":7100", Device: "cpu", Zone: w.zone}); err != nil {
			t.Fatal(err)
		}
	}
	p := c.State().GetPlan()
	if !slices.Equal(p.GetMembers(), []string{"w0", "w2", "w1"}) || ZoneCrossings(p) != 2 {
		t.Fatalf("members %v (%d crossings), want w0 w2 w1 (2)", p.GetMembers(), ZoneCrossings(p))
	}
	for _, w := range c.State().GetWorkers() {
		if want := map[string]string{"w0": "a", "w1": "b", "w2": "a"}[w.GetId()]; w.GetZone() != want {
			t.Errorf("worker %s zone %q, want %q", w.GetId(), w.GetZone(), want)
		}
	}
}
