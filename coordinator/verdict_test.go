package coordinator

import (
	"errors"
	"slices"
	"testing"
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

func TestVerdict(t *testing.T) {
	members := []string{"w0", "w1", "w2", "w3"}
	rep := func(pairs ...string) map[string]map[string]string {
		out := map[string]map[string]string{}
		for i := 0; i < len(pairs); i += 2 {
			accuser, accused := pairs[i], pairs[i+1]
			if out[accused] == nil {
				out[accused] = map[string]string{}
			}
			out[accused][accuser] = "unreachable"
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		reports map[string]map[string]string
		want    []string
	}{
		{"nothing", rep(), nil},
		{"a killed worker, reported by its neighbours", rep("w1", "w2", "w3", "w2"), []string{"w2"}},
		{"a killed worker, reported by one", rep("w0", "w3"), []string{"w3"}},
		{"two dead workers", rep("w0", "w3", "w1", "w2", "w0", "w2"), []string{"w2", "w3"}},
		{"partitioned from everyone: it reports all, all report it",
			rep("w0", "w1", "w2", "w1", "w3", "w1", "w1", "w0", "w1", "w2", "w1", "w3"), []string{"w1"}},
		{"two live workers report each other: the higher rank goes", rep("w0", "w1", "w1", "w0"), []string{"w1"}},
		{"a non-member is never chosen", rep("w0", "w9"), nil},
	} {
		if got := verdict(members, tc.reports); !slices.Equal(got, tc.want) {
			t.Errorf("%s: verdict %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNextHoldOff(t *testing.T) {
	now := time.Unix(1000, 0)
	var h holdOff
	var got []time.Duration
	for range 7 {
		h = nextHoldOff(h, now, 2*time.Second, 30*time.Second)
		got = append(got, h.until.Sub(now))
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("hold-offs %v, want %v", got, want)
	}
	// A worker that behaved for a long time starts over.
	h = nextHoldOff(h, now.Add(time.Hour), 2*time.Second, 30*time.Second)
	if d := h.until.Sub(now.Add(time.Hour)); d != 2*time.Second {
		t.Fatalf("hold-off after a quiet hour %v, want 2s", d)
	}
}

// TestReportPeerLost: two members report the third lost; the leader removes it at
// once (long before its lease would expire), refuses its Register while it is held
// off, and lets it back in afterwards. Reports that name a stale generation or a
// non-member are refused.
func TestReportPeerLost(t *testing.T) {
	c := MakeCluster(t, 1, func(cfg *Config) {
		cfg.Lease = time.Minute
		cfg.HoldOff, cfg.MaxHoldOff = 1500*time.Millisecond, 10*time.Second
	})
	cl := c.Client()
	c.Leader()
	submitJob(t, c, cl, 6)
	for _, id := range []string{"w0", "w1", "w2"} {
		if _, err := cl.Register(c.Ctx(10*time.Second), &pb.RegisterRequest{WorkerId: id, Address: id + ":9000", Device: "cpu"}); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	plan := c.WaitPlan("three members", func(p *pb.Plan) bool { return len(p.GetMembers()) == 3 })
	gen := plan.GetGeneration()
	ctx := c.Ctx(20 * time.Second)

	for _, bad := range []*pb.ReportPeerLostRequest{
		{WorkerId: "w0", Generation: gen - 1, PeerId: "w2"},
		{WorkerId: "w0", Generation: gen, PeerId: "nobody"},
		{WorkerId: "nobody", Generation: gen, PeerId: "w2"},
		{WorkerId: "w0", Generation: gen, PeerId: "w0"},
	} {
		if err := cl.ReportPeerLost(ctx, bad); err == nil {
			t.Fatalf("report %v accepted", bad)
		}
	}
	if err := cl.ReportPeerLost(ctx, &pb.ReportPeerLostRequest{WorkerId: "w0", Generation: gen, PeerId: "w2", Error: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ReportPeerLost(ctx, &pb.ReportPeerLostRequest{WorkerId: "w1", Generation: gen, PeerId: "w2", Error: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	next := c.WaitPlan("w2 removed", func(p *pb.Plan) bool { return p.GetGeneration() > gen && !slices.Contains(p.GetMembers(), "w2") })
	if !slices.Equal(next.GetMembers(), []string{"w0", "w1"}) {
		t.Fatalf("members after the verdict %v", next.GetMembers())
	}
	_, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: "w2", Address: "w2:9000", Device: "cpu"})
	if !errors.Is(err, ErrHeldOff) {
		t.Fatalf("register while held off: %v, want ErrHeldOff", err)
	}
	// After the hold-off it may register again and joins the next plan.
	c.WaitFor("the hold-off to end", func() bool {
		_, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: "w2", Address: "w2:9000", Device: "cpu"})
		return err == nil
	})
	if d := time.Since(removed); d < time.Second {
		t.Fatalf("registered again %v after the removal, before the 1.5 s hold-off", d)
	}
	c.WaitPlan("w2 back", func(p *pb.Plan) bool { return slices.Contains(p.GetMembers(), "w2") })
}
