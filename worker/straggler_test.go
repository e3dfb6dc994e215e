package worker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/metrics"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

func TestRankClock(t *testing.T) {
	var c rankClock
	if cm, wm := c.means(); cm != 0 || wm != 0 {
		t.Fatalf("empty clock: %v %v", cm, wm)
	}
	c.add(10*time.Millisecond, 2*time.Millisecond)
	c.add(20*time.Millisecond, 4*time.Millisecond)
	if cm, wm := c.means(); cm != 15*time.Millisecond || wm != 3*time.Millisecond {
		t.Fatalf("two steps: %v %v", cm, wm)
	}
	for range clockWindow {
		c.add(time.Millisecond, 0)
	}
	if cm, wm := c.means(); cm != time.Millisecond || wm != 0 {
		t.Fatalf("after a full window: %v %v, want the window's means only", cm, wm)
	}
}

// TestInmemStraggler: of three workers, one is slowed by 40 ms a step
// (Config.ComputeDelay). The progress rank 0 reports carries every rank's step
// times; they name the slow worker as the slowest, the others wait for it about as
// long as it is slowed, and each worker's gauges say the same.
func TestInmemStraggler(t *testing.T) {
	const delay = 40 * time.Millisecond
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps, spec.CheckpointInterval = 12, 0
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := jobspec.Encode(spec, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := newTestLogger(t)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		id := fmt.Sprintf("w%d", i)
		m, err := metrics.NewWorker(reg, id)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{ID: id, Coordinators: co, Logger: log, Metrics: m}
		if i == 1 {
			cfg.ComputeDelay = delay
		}
		w, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _, errs[i] = w.Run(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("w%d: %v", i, err)
		}
	}
	ranks := co.State().GetProgress().GetRanks()
	if len(ranks) != 3 {
		t.Fatalf("progress carries %d rank times, want 3: %v", len(ranks), co.State().GetProgress())
	}
	for _, r := range ranks {
		t.Logf("rank %d %s: compute %.1f ms, wait %.1f ms", r.GetRank(), r.GetWorkerId(), 1e3*r.GetComputeS(), 1e3*r.GetWaitS())
	}
	s := coordinator.FindStraggler(ranks)
	if s.Slowest.GetWorkerId() != "w1" {
		t.Fatalf("slowest %v, want w1", s.Slowest)
	}
	if s.Slowest.GetComputeS() < delay.Seconds() {
		t.Errorf("w1 computes %.1f ms a step, less than its delay", 1e3*s.Slowest.GetComputeS())
	}
	if s.OthersWaitS < delay.Seconds()/2 {
		t.Errorf("the others waited %.1f ms a step for w1, want about %v", 1e3*s.OthersWaitS, delay)
	}
	slow := gaugeValue(t, reg, "ringtrain_rank_compute_seconds", "w1")
	fast := gaugeValue(t, reg, "ringtrain_rank_compute_seconds", "w0")
	wait := gaugeValue(t, reg, "ringtrain_rank_wait_seconds", "w0")
	if slow < delay.Seconds() || fast >= slow || wait < delay.Seconds()/2 {
		t.Errorf("gauges: w1 computes %.3f s, w0 computes %.3f s and waits %.3f s", slow, fast, wait)
	}
}

// gaugeValue reads the gauge name{worker=id} from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, id string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "worker" && l.GetValue() == id {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{worker=%q}", name, id)
	return 0
}
