package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSharedRegistry: two workers and a coordinator replica register on one
// registry, as in one 'ringtrain local' process, and every gauge reads back.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, id := range []string{"w0", "w1"} {
		w, err := NewWorker(reg, id)
		if err != nil {
			t.Fatal(err)
		}
		w.SetGeneration(3, 2)
		w.StepDone(7, 1.5, 64, StepTimes{Compute: 3 * time.Millisecond, AllReduce: time.Millisecond}, 400)
		w.EvalDone(time.Second)
		w.SetRankTimes(5*time.Millisecond, 2*time.Millisecond)
	}
	err := RegisterCoordinator(reg, "c0", func() CoordinatorValues {
		return CoordinatorValues{RaftState: "Leader", Term: 2, CommitIndex: 40, Generation: 3, Workers: 2, CommittedStep: 7,
			Slowest: "w1", SlowestComputeS: 0.04, OthersWaitS: 0.03}
	})
	if err != nil {
		t.Fatal(err)
	}
	var nilWorker *Worker
	nilWorker.StepDone(1, 1, 1, StepTimes{}, 1) // records nothing, does not panic
	nilWorker.EvalDone(time.Second)
	body := scrape(t, reg)
	for _, want := range []string{
		`ringtrain_step{worker="w1"} 7`,
		`ringtrain_train_loss{worker="w0"} 1.5`,
		`ringtrain_tokens_total{worker="w0"} 64`,
		`ringtrain_allreduce_bytes_total{worker="w1"} 400`,
		`ringtrain_step_duration_seconds_count{worker="w0"} 1`,
		`ringtrain_allreduce_duration_seconds_count{worker="w0"} 1`,
		`ringtrain_step_duration_seconds_sum{worker="w0"} 0.004`,
		`ringtrain_step_phase_seconds_sum{phase="compute",worker="w0"} 0.003`,
		`ringtrain_step_phase_seconds_sum{phase="allreduce",worker="w1"} 0.001`,
		`ringtrain_step_phase_seconds_count{phase="waiting",worker="w1"} 1`,
		`ringtrain_eval_duration_seconds_count{worker="w0"} 1`,
		`ringtrain_world_size{worker="w0"} 2`,
		`ringtrain_generation{replica="",worker="w0"} 3`,
		`ringtrain_generation{replica="c0",worker=""} 3`,
		`ringtrain_raft_state{replica="c0",state="Leader"} 1`,
		`ringtrain_raft_state{replica="c0",state="Follower"} 0`,
		`ringtrain_raft_term{replica="c0"} 2`,
		`ringtrain_raft_commit_index{replica="c0"} 40`,
		`ringtrain_workers{replica="c0"} 2`,
		`ringtrain_committed_step{replica="c0"} 7`,
		`ringtrain_rank_compute_seconds{worker="w0"} 0.005`,
		`ringtrain_rank_wait_seconds{worker="w1"} 0.002`,
		`ringtrain_straggler_compute_seconds{replica="c0",worker="w1"} 0.04`,
		`ringtrain_straggler_wait_seconds{replica="c0",worker="w1"} 0.03`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
}

func TestSplitString(t *testing.T) {
	var s Split
	if got := s.String(); got != "step time: no steps" {
		t.Errorf("empty split: %q", got)
	}
	s.Add(StepTimes{Compute: 16 * time.Millisecond, AllReduce: 2 * time.Millisecond, Optimizer: time.Millisecond,
		Waiting: time.Millisecond, RingBusy: 5 * time.Millisecond})
	s.Add(StepTimes{Compute: 20 * time.Millisecond, AllReduce: 2 * time.Millisecond, Optimizer: 3 * time.Millisecond,
		Waiting: 5 * time.Millisecond, RingBusy: 7 * time.Millisecond})
	if m := s.Mean(); m.Total() != 25*time.Millisecond || m.RingBusy != 6*time.Millisecond {
		t.Errorf("mean %+v, total %v", m, m.Total())
	}
	want := "step time 25.0 ms over 2 steps: compute 18.0 ms (72%), all-reduce 2.00 ms (8%; ring busy 6.00 ms), " +
		"optimizer 2.00 ms (8%), waiting 3.00 ms (12%)"
	if got := s.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestJobStateGauge: ringtrain_job_state has one series per state, 1 for the
// job's current one and 0 for the others, all 0 without a job (as
// kube-state-metrics exposes a pod's phase).
func TestJobStateGauge(t *testing.T) {
	for _, current := range []string{"running", "finished", "failed", "none"} {
		t.Run(current, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			if err := RegisterCoordinator(reg, "c1", func() CoordinatorValues {
				return CoordinatorValues{RaftState: "Follower", JobState: current}
			}); err != nil {
				t.Fatal(err)
			}
			body := scrape(t, reg)
			if !strings.Contains(body, "# TYPE ringtrain_job_state gauge\n") {
				t.Errorf("ringtrain_job_state is not a gauge:\n%s", body)
			}
			for _, s := range JobStates {
				want := "0"
				if s == current {
					want = "1"
				}
				line := `ringtrain_job_state{replica="c1",state="` + s + `"} ` + want + "\n"
				if !strings.Contains(body, line) {
					t.Errorf("missing %q in\n%s", line, body)
				}
			}
		})
	}
}
