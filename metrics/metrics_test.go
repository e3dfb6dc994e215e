package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
		w.StepDone(7, 1.5, 64, 0, 400, 0)
	}
	err := RegisterCoordinator(reg, "c0", func() CoordinatorValues {
		return CoordinatorValues{RaftState: "Leader", Term: 2, CommitIndex: 40, Generation: 3, Workers: 2, CommittedStep: 7}
	})
	if err != nil {
		t.Fatal(err)
	}
	var nilWorker *Worker
	nilWorker.StepDone(1, 1, 1, 0, 1, 0) // records nothing, does not panic
	body := scrape(t, reg)
	for _, want := range []string{
		`ringtrain_step{worker="w1"} 7`,
		`ringtrain_train_loss{worker="w0"} 1.5`,
		`ringtrain_tokens_total{worker="w0"} 64`,
		`ringtrain_allreduce_bytes_total{worker="w1"} 400`,
		`ringtrain_step_duration_seconds_count{worker="w0"} 1`,
		`ringtrain_allreduce_duration_seconds_count{worker="w0"} 1`,
		`ringtrain_world_size{worker="w0"} 2`,
		`ringtrain_generation{replica="",worker="w0"} 3`,
		`ringtrain_generation{replica="c0",worker=""} 3`,
		`ringtrain_raft_state{replica="c0",state="Leader"} 1`,
		`ringtrain_raft_state{replica="c0",state="Follower"} 0`,
		`ringtrain_raft_term{replica="c0"} 2`,
		`ringtrain_raft_commit_index{replica="c0"} 40`,
		`ringtrain_workers{replica="c0"} 2`,
		`ringtrain_committed_step{replica="c0"} 7`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
}
