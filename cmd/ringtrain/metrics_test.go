package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/metrics"
)

// TestCoordinatorMetrics: a replica's gauges read its Raft state and the replicated
// state at scrape time.
func TestCoordinatorMetrics(t *testing.T) {
	c := coordinator.MakeCluster(t, 1)
	node := c.Node(c.Leader())
	reg := prometheus.NewRegistry()
	if err := registerNode(reg, node); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	id := node.ID()
	for _, want := range []string{
		`ringtrain_raft_state{replica="` + id + `",state="Leader"} 1`,
		`ringtrain_raft_state{replica="` + id + `",state="Follower"} 0`,
		`ringtrain_workers{replica="` + id + `"} 0`,
		`ringtrain_committed_step{replica="` + id + `"} 0`,
		`ringtrain_generation{replica="` + id + `",worker=""} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
	for _, name := range []string{"ringtrain_raft_term", "ringtrain_raft_commit_index"} {
		if !strings.Contains(body, name+`{replica="`+id+`"} `) || strings.Contains(body, name+`{replica="`+id+`"} 0`+"\n") {
			t.Errorf("%s missing or zero in\n%s", name, body)
		}
	}
}

// TestLocalServesMetrics: 'ringtrain local' with two workers and a replica on one
// registry starts (no conflicting registrations) and finishes.
func TestLocalServesMetrics(t *testing.T) {
	data := prepareData(t)
	dir := t.TempDir()
	mustRun(t, "local", "--data", data, "--dir", dir, "--steps", "2", "--sample-tokens", "0", "--workers", "2",
		"--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "2", "--eval-batches", "1",
		"--metrics-addr", "127.0.0.1:0")
}
