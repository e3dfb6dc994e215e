package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// compose runs docker compose (the plugin, or docker-compose where only that is
// installed) on deploy/docker/compose.yaml as one project.
type compose struct {
	t       *testing.T
	bin     []string // "docker compose" or "docker-compose"
	project string
	file    string
	env     []string
	ids     map[string]string // container ids by service, once up
}

// findCompose returns the compose command, or skips the test when Docker or its
// daemon is not there.
func findCompose(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("the docker daemon is unreachable: %v: %s", err, bytes.TrimSpace(out))
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("neither `docker compose` nor docker-compose is installed")
	return nil
}

// run runs a compose subcommand and returns its standard output.
func (c *compose) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append(append(append([]string{}, c.bin[1:]...), "-p", c.project, "-f", c.file), args...)
	cmd := exec.CommandContext(ctx, c.bin[0], full...)
	cmd.Env = append(os.Environ(), c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", strings.Join(c.bin, " "), strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

func (c *compose) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// container returns the id of a service's container.
func (c *compose) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.must(time.Minute, "ps", "-q", service))
	if id == "" {
		c.t.Fatalf("service %s has no container", service)
	}
	return id
}

func docker(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// clusterStatus is the part of `ringtrain status --json` the test reads.
type clusterStatus struct {
	Leader string `json:"leader"`
	Plan   struct {
		Generation json.Number `json:"generation"`
		Workers    []struct {
			ID string `json:"id"`
		} `json:"workers"`
	} `json:"plan"`
	Progress struct {
		Step json.Number `json:"step"`
	} `json:"progress"`
	LastCheckpoint struct {
		Step json.Number `json:"step"`
	} `json:"last_checkpoint"`
}

func num(n json.Number) int64 {
	v, _ := strconv.ParseInt(string(n), 10, 64)
	return v
}

var coordinatorServices = []string{"coordinator-0", "coordinator-1", "coordinator-2"}

// status runs `ringtrain status --json` inside a running coordinator container (the
// cluster's network is internal: nothing is published on the host).
func (c *compose) status(skip string) (clusterStatus, error) {
	var st clusterStatus
	var addrs []string
	for _, s := range coordinatorServices {
		addrs = append(addrs, s+":7001")
	}
	var lastErr error
	for _, s := range coordinatorServices {
		if s == skip {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "docker", "exec", c.ids[s], "/usr/local/bin/ringtrain", "status", "--json", "--timeout", "5s",
			"--coordinators", strings.Join(addrs, ","))
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("ringtrain status in %s: %w: %s", s, err, bytes.TrimSpace(errb.Bytes()))
			continue
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return st, fmt.Errorf("status --json: %w\n%s", err, out)
		}
		return st, nil
	}
	return st, lastErr
}

// waitFor polls the cluster's status until cond holds.
func (c *compose) waitFor(what string, d time.Duration, skip string, cond func(clusterStatus) bool) clusterStatus {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var last clusterStatus
	var lastErr error
	failed := 0
	for time.Now().Before(deadline) {
		st, err := c.status(skip)
		if err == nil {
			last = st
			if cond(st) {
				c.t.Logf("%s: step %s, generation %s, leader %s", what, st.Progress.Step, st.Plan.Generation, st.Leader)
				if failed > 0 {
					c.t.Logf("%d status calls failed on the way, the last with: %v", failed, lastErr)
				}
				return st
			}
		} else {
			failed++
			lastErr = err
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.t.Fatalf("%s: not within %v (last status %+v, last error %v)", what, d, last, lastErr)
	return last
}

// TestComposeCluster builds the image with deploy/docker/build.sh, runs the compose
// cluster (3 coordinators, 3 workers) on a short job, stops one worker gracefully and
// starts it again, kills another worker container and the leader's coordinator
// container while it trains, brings both back, and checks that the job completes
// with every rank holding the same weights.
func TestComposeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("container test: skipped with -short")
	}
	bin := findCompose(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	build := exec.Command(filepath.Join(root, "deploy/docker/build.sh"))
	build.Env = append(os.Environ(), "RINGTRAIN_IMAGE=ringtrain:dev")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}

	// The job: short, but long enough to kill things while it trains. The file is
	// bind-mounted into the submit container, whose user must be able to read it.
	const steps = 2000
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	job := filepath.Join(dir, "job.yaml")
	spec := fmt.Sprintf(`model: {layers: 2, heads: 4, embd: 128}
data: /data/shakespeare
out: /data/run
seq_len: 64
micro_batch: 2
streams: 6
steps: %d
seed: 7
lr: 0.002
min_lr: 0.0002
warmup_steps: 50
log_interval: 100
eval_interval: 0
eval_batches: 5
checkpoint_interval: 200
`, steps)
	if err := os.WriteFile(job, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}

	c := &compose{t: t, bin: bin, project: fmt.Sprintf("ringtrain-test-%d-%d", os.Getpid(), rand.IntN(1<<20)),
		file: filepath.Join(root, "deploy/docker/compose.yaml"),
		env:  []string{"RINGTRAIN_IMAGE=ringtrain:dev", "RINGTRAIN_JOB_FILE=" + job}}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := c.run(time.Minute, "logs", "--no-color", "--tail", "150")
			t.Logf("--- compose logs ---\n%s", logs)
		}
		if _, err := c.run(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("compose down: %v", err)
		}
		// Nothing of the project may remain.
		for _, kind := range [][]string{{"ps", "-a"}, {"network", "ls"}, {"volume", "ls"}} {
			args := append(kind, "-q", "--filter", "label=com.docker.compose.project="+c.project)
			if left := docker(t, time.Minute, args...); left != "" {
				t.Errorf("docker %s: left behind: %s", strings.Join(kind, " "), left)
			}
		}
	})
	start := time.Now()
	c.must(5*time.Minute, "up", "-d")

	workers := []string{"worker-0", "worker-1", "worker-2"}
	ids := map[string]string{}
	for _, s := range append(workers, coordinatorServices...) {
		ids[s] = c.container(s)
	}
	c.ids = ids
	st := c.waitFor("training with 3 workers", 4*time.Minute, "", func(st clusterStatus) bool {
		return num(st.Progress.Step) >= 100 && len(st.Plan.Workers) == 3
	})

	// SIGTERM (docker stop, as the kubelet stops a pod) is a graceful leave: the
	// worker tells the coordinator it is gone and exits 0, and the other two go on.
	// It then comes back and is given the state of its peers.
	t.Log("stopping worker-1 (SIGTERM)")
	docker(t, time.Minute, "stop", "--time", "20", ids["worker-1"])
	if code := docker(t, time.Minute, "inspect", "--format", "{{.State.ExitCode}}", ids["worker-1"]); code != "0" {
		t.Errorf("worker-1 exited with %s after SIGTERM, want 0", code)
	}
	if logs := docker(t, time.Minute, "logs", ids["worker-1"]); !strings.Contains(logs, "left the cluster") {
		t.Errorf("worker-1 did not leave the cluster on SIGTERM")
	}
	gen := num(st.Plan.Generation)
	st = c.waitFor("training on without worker-1", 2*time.Minute, "", func(s clusterStatus) bool {
		return num(s.Plan.Generation) > gen && len(s.Plan.Workers) == 2 && num(s.Progress.Step) >= num(st.Progress.Step)+30
	})
	docker(t, time.Minute, "start", ids["worker-1"])
	st = c.waitFor("worker-1 back", 2*time.Minute, "", func(s clusterStatus) bool {
		return len(s.Plan.Workers) == 3 && num(s.Progress.Step) >= num(st.Progress.Step)+30
	})

	// A worker dies: the other two go on in a new generation.
	t.Log("killing worker-2")
	w2 := ids["worker-2"]
	docker(t, time.Minute, "kill", w2)
	gen = num(st.Plan.Generation)
	st = c.waitFor("training on without worker-2", 2*time.Minute, "", func(s clusterStatus) bool {
		return num(s.Plan.Generation) > gen && len(s.Plan.Workers) == 2 && num(s.Progress.Step) >= num(st.Progress.Step)+50
	})
	if num(st.Progress.Step) >= steps-200 {
		t.Logf("note: the job is at step %s of %d already; the coordinator fail-over comes late", st.Progress.Step, steps)
	}

	// The leader's replica dies: the other two elect a new leader, and progress keeps
	// being committed.
	leader := st.Leader
	if leader == "" {
		t.Fatalf("no leader in %+v", st)
	}
	t.Logf("killing the leader %s", leader)
	lc, ok := ids[leader]
	if !ok {
		t.Fatalf("leader %q is not a coordinator service", leader)
	}
	docker(t, time.Minute, "kill", lc)
	st = c.waitFor("progress committed by a new leader", 2*time.Minute, leader, func(s clusterStatus) bool {
		return s.Leader != "" && s.Leader != leader && num(s.Progress.Step) >= num(st.Progress.Step)+20
	})

	// Both come back: the replica from its volume, the worker as a new member that
	// receives the state from its peers.
	docker(t, time.Minute, "start", lc)
	docker(t, time.Minute, "start", w2)

	for _, w := range workers {
		code := docker(t, 5*time.Minute, "wait", ids[w])
		if code != "0" {
			t.Errorf("%s exited with %s", w, code)
		}
	}
	t.Logf("the job finished %v after `up`", time.Since(start).Round(time.Second))

	// Every worker that finished reports the same step and weights; the final step
	// and checkpoint are committed.
	done := regexp.MustCompile(`done: step (\d+), .* weights ([0-9a-f]{16});`)
	var digests []string
	for _, w := range workers {
		logs := docker(t, time.Minute, "logs", ids[w])
		if strings.Contains(logs, "diverged") {
			t.Errorf("%s reports diverged replicas", w)
		}
		m := done.FindAllStringSubmatch(logs, -1)
		if len(m) == 0 {
			t.Errorf("%s printed no done line", w)
			continue
		}
		last := m[len(m)-1]
		if last[1] != strconv.Itoa(steps) {
			t.Errorf("%s finished at step %s, want %d", w, last[1], steps)
		}
		t.Logf("%s: step %s, weights %s", w, last[1], last[2])
		digests = append(digests, last[2])
	}
	for _, d := range digests {
		if d != digests[0] {
			t.Errorf("ranks finished with different weights: %v", digests)
			break
		}
	}
	if len(digests) < 2 {
		t.Errorf("only %d workers finished", len(digests))
	}
	st = c.waitFor("the final step committed", time.Minute, "", func(s clusterStatus) bool {
		return num(s.Progress.Step) == steps && num(s.LastCheckpoint.Step) == steps
	})
}
