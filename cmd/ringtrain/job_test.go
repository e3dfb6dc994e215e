package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// ringtrainCtx is ringtrain (main_test.go) under ctx, with stdout and stderr kept
// apart and both returned.
func ringtrainCtx(ctx context.Context, t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// writeJob writes a job YAML of a tiny model trained for steps steps on data.
func writeJob(t *testing.T, data, out string, steps int) string {
	t.Helper()
	return writeJobWith(t, data, out, steps, "")
}

// writeJobWith is writeJob with the YAML lines extra ("key: value" each), which
// replace writeJob's lines of the same keys.
func writeJobWith(t *testing.T, data, out string, steps int, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.yaml")
	yaml := fmt.Sprintf(`model: {layers: 1, heads: 2, embd: 16}
data: %s
out: %s
seq_len: 16
micro_batch: 2
streams: 2
steps: %d
warmup_steps: 1
log_interval: 1
eval_interval: 0
eval_batches: 1
checkpoint_interval: 2
`, data, out, steps)
	var lines []string
	for _, l := range strings.Split(yaml, "\n") {
		if key, _, ok := strings.Cut(l, ":"); !ok || !strings.Contains(extra, "\n"+key+":") && !strings.HasPrefix(extra, key+":") {
			lines = append(lines, l)
		}
	}
	yaml = strings.Join(lines, "\n") + extra
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// workers runs `ringtrain worker` n times in the background against addr, named
// prefix0, prefix1, ...; wait returns their outputs and errors once all returned.
func workers(t *testing.T, addr, prefix string, n int) (wait func() ([]string, []error)) {
	t.Helper()
	outs, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	for i := range n {
		wg.Go(func() {
			outs[i], _, errs[i] = ringtrainCtx(ctx, t, "worker", "--coordinators", addr, "--id", fmt.Sprintf("%s%d", prefix, i), "--listen", "127.0.0.1:0")
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func() ([]string, []error) { wg.Wait(); return outs, errs }
}

// statusJSONOf runs `status --json` and decodes it generically, so that the test
// sees the JSON types (numbers, strings, objects) as a script would.
func statusJSONOf(t *testing.T, addr string) (map[string]any, string) {
	t.Helper()
	out, _, err := ringtrainCtx(context.Background(), t, "status", "--json", "--coordinators", addr)
	if err != nil {
		t.Fatalf("status --json: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("status --json printed invalid JSON: %v\n%s", err, out)
	}
	return v, out
}

// get walks a decoded JSON value along keys.
func get(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object in %v", k, v)
		}
		v = m[k]
	}
	return v
}

// wantNumber checks that the JSON value at keys is the number want.
func wantNumber(t *testing.T, v any, want float64, keys ...string) {
	t.Helper()
	got, ok := get(t, v, keys...).(float64)
	if !ok || got != want {
		t.Errorf("status --json %s = %#v, want the number %v", strings.Join(keys, "."), get(t, v, keys...), want)
	}
}

// TestSubmitWaitAndStatus runs the job's lifecycle through the command line
// against an in-process coordinator replica and `ringtrain worker`s: `submit
// --follow` blocks until the job finished and exits 0 with the final checkpoint;
// `status --json` shows the job finished with its spec decoded, plain integers and
// lower-case states; a worker started afterwards exits 0 at once; a job that fails
// makes `submit --wait` and its worker exit non-zero with the reason; an interrupt
// ends the wait with status 130.
func TestSubmitWaitAndStatus(t *testing.T) {
	data := prepareData(t)
	c := coordinator.MakeCluster(t, 1)
	c.Leader()
	addr := c.Node(0).GRPCAddr()
	run := t.TempDir()
	job := writeJob(t, data, run, 40)

	if v, _ := statusJSONOf(t, addr); get(t, v, "job") != nil {
		t.Errorf("status --json before any job: job %v, want null", get(t, v, "job"))
	}

	wait := workers(t, addr, "w", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _, err := ringtrainCtx(ctx, t, "submit", job, "--coordinators", addr, "--min-workers", "2", "--follow", "--interval", "100ms")
	final := ckptDir(run, 40)
	if err != nil || exitCode(err) != 0 {
		t.Fatalf("submit --follow: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	digest, derr := model.CheckpointDigest(final)
	if derr != nil {
		t.Fatalf("the final checkpoint: %v", derr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || lines[0] != "submitted "+job+": 40 steps over 2 streams" ||
		!strings.HasPrefix(lines[len(lines)-2], "step 40/40  loss ") ||
		lines[len(lines)-1] != "finished at step 40: checkpoint "+final+" (sha256 "+digest+")" {
		t.Errorf("submit --follow printed:\n%s\nwant the submission, progress lines ending at step 40, the final checkpoint", out)
	}
	for _, l := range lines[1 : len(lines)-1] {
		if !followRE.MatchString(l) {
			t.Errorf("submit --follow printed the progress line %q", l)
		}
	}
	outs, errs := wait()
	for i := range outs {
		if errs[i] != nil || !strings.Contains(outs[i], "done: step 40,") {
			t.Errorf("worker w%d: %v\n%s", i, errs[i], outs[i])
		}
	}

	c.WaitPlan("the ENDED plan once the workers left", func(p *pb.Plan) bool { return p.GetState() == pb.PlanState_PLAN_STATE_ENDED })
	v, raw := statusJSONOf(t, addr)
	if get(t, v, "job", "state") != "finished" || get(t, v, "plan", "state") != "ended" {
		t.Errorf("status --json: job %v, plan %v; want finished and ended", get(t, v, "job", "state"), get(t, v, "plan", "state"))
	}
	if get(t, v, "job", "final_checkpoint", "location") != final || get(t, v, "job", "final_checkpoint", "sha256") != digest {
		t.Errorf("status --json final checkpoint %v, want %s (%s)", get(t, v, "job", "final_checkpoint"), final, digest)
	}
	wantNumber(t, v, 40, "job", "steps")
	wantNumber(t, v, 40, "job", "spec", "steps")
	wantNumber(t, v, 16, "job", "spec", "seq_len")
	wantNumber(t, v, 1, "job", "spec", "model", "n_layer")
	wantNumber(t, v, 40, "progress", "step")
	// The ranks' step times, and the slowest of them.
	if ranks, ok := get(t, v, "progress", "ranks").([]any); !ok || len(ranks) != 2 {
		t.Errorf("status --json progress.ranks = %#v, want both ranks", get(t, v, "progress", "ranks"))
	}
	if w, ok := get(t, v, "progress", "straggler", "worker_id").(string); !ok || !strings.HasPrefix(w, "w") {
		t.Errorf("status --json progress.straggler = %#v, want a worker", get(t, v, "progress", "straggler"))
	}
	wantNumber(t, v, 40, "last_checkpoint", "step")
	wantNumber(t, v, 2, "job", "min_workers")
	if term, ok := get(t, v, "term").(float64); !ok || term < 1 {
		t.Errorf("status --json term %#v, want a number", get(t, v, "term"))
	}
	if get(t, v, "job", "spec", "data") != data || get(t, v, "job", "failure") != nil {
		t.Errorf("status --json job %v, want the spec decoded with data %s and no failure", get(t, v, "job"), data)
	}
	for _, banned := range []string{"spec_json", "PLAN_STATE_", "JOB_STATE_", `"step": "`} {
		if strings.Contains(raw, banned) {
			t.Errorf("status --json contains %q:\n%s", banned, raw)
		}
	}
	// The replica's gauges, as `ringtrain coordinator --metrics-addr` serves them.
	reg := prometheus.NewRegistry()
	if err := registerNode(reg, c.Node(0)); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`ringtrain_job_state{replica="c0",state="finished"} 1`, `ringtrain_job_state{replica="c0",state="failed"} 0`} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, rec.Body.String())
		}
	}
	human, _, err := ringtrainCtx(context.Background(), t, "status", "--coordinators", addr)
	if err != nil || !regexp.MustCompile(`state\s+finished\s+step 40\s+checkpoint `+regexp.QuoteMeta(final)+`\s+sha256 `+digest).MatchString(human) {
		t.Errorf("status: %v, want the job finished with its checkpoint:\n%s", err, human)
	}
	if !regexp.MustCompile(`slowest\s+rank [01] \(w[01]\)\s+compute [0-9.]+ ms/step\s+the others waited [0-9.]+ ms/step for it`).MatchString(human) {
		t.Errorf("status names no slowest rank:\n%s", human)
	}
	// status --watch on an ended job shows it once and returns.
	watched, _, err := ringtrainCtx(ctx, t, "status", "--watch", "--coordinators", addr)
	if err != nil || strings.Count(watched, "answered by") != 1 || !strings.Contains(watched, "finished") {
		t.Errorf("status --watch of a finished job: %v\n%s", err, watched)
	}

	// A worker (re)started after the end exits 0 at once.
	start := time.Now()
	late, _, err := ringtrainCtx(ctx, t, "worker", "--coordinators", addr, "--id", "w7", "--listen", "127.0.0.1:0")
	if err != nil || !strings.Contains(late, "done: the job had already finished at step 40; checkpoint "+final) {
		t.Errorf("worker after the end: %v\n%s", err, late)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("worker after the end took %v", took)
	}

	// The same job again changes nothing and --wait returns success at once.
	if out, _, err := ringtrainCtx(ctx, t, "submit", job, "--coordinators", addr, "--min-workers", "2", "--wait"); err != nil || !strings.Contains(out, "finished at step 40") {
		t.Errorf("submit --wait of the finished job: %v\n%s", err, out)
	}

	// A job whose dataset is missing fails: its worker and `submit --wait` exit 1
	// with the reason. The worker starts once the job is submitted (before, it would
	// find the previous job finished and exit 0); the same job submitted again then
	// waits for it.
	missing := filepath.Join(t.TempDir(), "no-such-dataset")
	bad := writeJob(t, missing, t.TempDir(), 4)
	if out, _, err := ringtrainCtx(ctx, t, "submit", bad, "--coordinators", addr, "--replace"); err != nil {
		t.Fatalf("submit --replace: %v\n%s", err, out)
	}
	waitBad := workers(t, addr, "f", 1)
	out, _, err = ringtrainCtx(ctx, t, "submit", bad, "--coordinators", addr, "--wait", "--interval", "100ms")
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "job failed at step 0 (reported by worker f0)") ||
		!strings.Contains(fmt.Sprint(err), "no-such-dataset") || !strings.Contains(fmt.Sprint(err), "--replace") {
		t.Errorf("submit --wait of a failing job: %v (exit %d), want exit 1 with the reason\n%s", err, exitCode(err), out)
	}
	_, errs = waitBad()
	if exitCode(errs[0]) != 1 || !strings.Contains(fmt.Sprint(errs[0]), "no-such-dataset") {
		t.Errorf("worker of the failing job: %v (exit %d), want exit 1 naming the dataset", errs[0], exitCode(errs[0]))
	}
	v, _ = statusJSONOf(t, addr)
	if get(t, v, "job", "state") != "failed" || get(t, v, "job", "failure", "worker_id") != "f0" ||
		!strings.Contains(fmt.Sprint(get(t, v, "job", "failure", "reason")), "no-such-dataset") {
		t.Errorf("status --json after the failure: job %v", get(t, v, "job"))
	}
	wantNumber(t, v, 0, "job", "failure", "step")
	if human, _, _ := ringtrainCtx(ctx, t, "status", "--coordinators", addr); !regexp.MustCompile(`state\s+failed\s+step 0\s+reported by f0\s+worker f0: .*no-such-dataset`).MatchString(human) {
		t.Errorf("status after the failure:\n%s", human)
	}

	// Run again with --replace and no worker: an interrupt ends the wait with 130,
	// and so does one of status --watch; the job stays submitted, running.
	ictx, icancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer icancel()
	_, _, err = ringtrainCtx(ictx, t, "submit", bad, "--coordinators", addr, "--replace", "--follow", "--interval", "100ms")
	if exitCode(err) != 130 {
		t.Errorf("interrupted submit --follow: %v (exit %d), want 130", err, exitCode(err))
	}
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer wcancel()
	watched, _, err = ringtrainCtx(wctx, t, "status", "--watch", "--json", "--interval", "50ms", "--coordinators", addr)
	if exitCode(err) != 130 || !strings.Contains(watched, `"state": "running"`) {
		t.Errorf("interrupted status --watch: %v (exit %d)\n%s", err, exitCode(err), watched)
	}
}

// TestSubmitWaitEarlyStop: a cluster job that a stopping rule ends before its
// steps (target_val_loss, met by the evaluation of step 3) becomes FINISHED in the
// replicated state: `submit --wait` returns 0 with the step, the rule and the final
// checkpoint; `status` and `status --json` show them; a worker started afterwards
// exits 0 at once, saying the same.
func TestSubmitWaitEarlyStop(t *testing.T) {
	data := prepareData(t)
	c := coordinator.MakeCluster(t, 1)
	c.Leader()
	addr := c.Node(0).GRPCAddr()
	run := t.TempDir()
	job := writeJobWith(t, data, run, 40, "eval_interval: 3\ntarget_val_loss: 1000\n")

	wait := workers(t, addr, "w", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _, err := ringtrainCtx(ctx, t, "submit", job, "--coordinators", addr, "--min-workers", "2", "--wait", "--interval", "100ms")
	if err != nil {
		t.Fatalf("submit --wait: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	final := ckptDir(run, 3)
	digest, err := model.CheckpointDigest(final)
	if err != nil {
		t.Fatalf("the final checkpoint: %v", err)
	}
	if want := "finished at step 3 of 40 (stopped early: target_val_loss reached): checkpoint " + final + " (sha256 " + digest + ")\n"; !strings.HasSuffix(out, want) {
		t.Errorf("submit --wait printed:\n%s\nwant it to end with %q", out, want)
	}
	outs, errs := wait()
	for i := range outs {
		if errs[i] != nil || !strings.Contains(outs[i], "done: step 3,") || !strings.Contains(outs[i], "stopped early by target_val_loss at step 3") {
			t.Errorf("worker w%d: %v\n%s", i, errs[i], outs[i])
		}
	}

	human, _, err := ringtrainCtx(ctx, t, "status", "--coordinators", addr)
	if err != nil || !regexp.MustCompile(`state\s+finished\s+step 3 of 40 \(stopped early: target_val_loss reached\)\s+checkpoint `+regexp.QuoteMeta(final)+`\s+sha256 `+digest).MatchString(human) {
		t.Errorf("status: %v, want the job finished early with its checkpoint:\n%s", err, human)
	}
	v, _ := statusJSONOf(t, addr)
	if get(t, v, "job", "state") != "finished" || get(t, v, "job", "stop_reason") != "target_val_loss" ||
		get(t, v, "job", "final_checkpoint", "location") != final || get(t, v, "job", "final_checkpoint", "sha256") != digest ||
		get(t, v, "job", "final_checkpoint", "final") != true {
		t.Errorf("status --json job %v, want finished by target_val_loss with the final checkpoint %s", get(t, v, "job"), final)
	}
	wantNumber(t, v, 3, "job", "final_step")
	wantNumber(t, v, 3, "job", "final_checkpoint", "step")
	wantNumber(t, v, 40, "job", "steps")

	late, _, err := ringtrainCtx(ctx, t, "worker", "--coordinators", addr, "--id", "w7", "--listen", "127.0.0.1:0")
	if err != nil || !strings.Contains(late, "done: the job had already finished at step 3 (stopped early: target_val_loss reached); checkpoint "+final) {
		t.Errorf("worker after the end: %v\n%s", err, late)
	}
}

// followRE matches submit --follow's progress lines.
var followRE = regexp.MustCompile(`^step \d+/40  loss (-|\d+\.\d{4})  (forming the next plan|workers 2  generation \d+|(waiting|ended): .+ \(generation \d+\))$`)

// TestFollowLine: --follow's line for each kind of state.
func TestFollowLine(t *testing.T) {
	job := &pb.JobSpec{Steps: 600}
	for _, tc := range []struct {
		st   *pb.CoordinatorState
		want string
	}{
		{&pb.CoordinatorState{Job: job}, "step 0/600  loss -  forming the next plan"},
		{&pb.CoordinatorState{Job: job, MembershipEpoch: 2, Plan: &pb.Plan{Generation: 1, MembershipEpoch: 1, State: pb.PlanState_PLAN_STATE_WAITING, Reason: "no job submitted"}},
			"step 0/600  loss -  forming the next plan"},
		{&pb.CoordinatorState{Job: job, Plan: &pb.Plan{Generation: 1, State: pb.PlanState_PLAN_STATE_WAITING, Reason: "waiting for workers: 1 registered, min_workers 3"}},
			"step 0/600  loss -  waiting: waiting for workers: 1 registered, min_workers 3 (generation 1)"},
		{&pb.CoordinatorState{Job: job, Progress: &pb.Progress{Step: 120, Loss: 2.34567},
			Plan: &pb.Plan{Generation: 4, State: pb.PlanState_PLAN_STATE_ACTIVE, Members: []string{"w0", "w1", "w2"}}},
			"step 120/600  loss 2.3457  workers 3  generation 4"},
		{&pb.CoordinatorState{Job: job, Progress: &pb.Progress{Step: 600, Loss: 1.5},
			Plan: &pb.Plan{Generation: 5, State: pb.PlanState_PLAN_STATE_ENDED, Reason: "job finished at step 600"}},
			"step 600/600  loss 1.5000  ended: job finished at step 600 (generation 5)"},
	} {
		if got := followLine(tc.st); got != tc.want {
			t.Errorf("followLine = %q, want %q", got, tc.want)
		}
	}
}

// TestStatusUnreachable: with no coordinator listening, status fails within its
// timeout and says that each address refused the connection.
func TestStatusUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, _, err = ringtrainCtx(context.Background(), t, "status", "--coordinators", addr, "--timeout", "1s")
	if err == nil || !strings.Contains(err.Error(), addr+": dial tcp "+addr+": connect: connection refused") {
		t.Fatalf("status of an unreachable coordinator: %v, want the refused connection named", err)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{fmt.Errorf("plain"), 1},
		{errWaitInterrupted(), 130},
		{fmt.Errorf("wrapped: %w", &exitError{code: 2, err: fmt.Errorf("usage")}), 2},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestFinishedLine: the line submit --wait ends with, and the status table's state,
// for a job that ran all its steps and for one each stopping rule ended early.
func TestFinishedLine(t *testing.T) {
	for _, tc := range []struct {
		step   int64
		reason string
		want   string
	}{
		{600, "", "finished at step 600: checkpoint run/ckpt/step-000600 (sha256 ab)"},
		{300, "target_val_loss", "finished at step 300 of 600 (stopped early: target_val_loss reached): checkpoint run/ckpt/step-000300 (sha256 ab)"},
		{300, "patience", "finished at step 300 of 600 (stopped early: patience exhausted): checkpoint run/ckpt/step-000300 (sha256 ab)"},
		{300, "max_time", "finished at step 300 of 600 (stopped early: max_time reached): checkpoint run/ckpt/step-000300 (sha256 ab)"},
		{300, "a newer rule", "finished at step 300 of 600 (stopped early: a newer rule): checkpoint run/ckpt/step-000300 (sha256 ab)"},
	} {
		c := &pb.Checkpoint{Step: tc.step, Location: fmt.Sprintf("run/ckpt/step-%06d", tc.step), Sha256: "ab", Final: true, StopReason: tc.reason}
		st := &pb.CoordinatorState{Job: &pb.JobSpec{Steps: 600}, Checkpoints: []*pb.Checkpoint{c},
			JobStatus: &pb.JobStatus{State: pb.JobState_JOB_STATE_FINISHED, Step: tc.step, FinalCheckpoint: c, StopReason: tc.reason}}
		if got := finishedLine(st); got != tc.want {
			t.Errorf("finishedLine = %q, want %q", got, tc.want)
		}
		early := ""
		if tc.reason != "" {
			early = " of 600 (stopped early: "
		}
		if got := jobStateLine(st); !strings.HasPrefix(got, fmt.Sprintf("finished\tstep %d%s", tc.step, early)) || !strings.HasSuffix(got, "\tcheckpoint "+c.GetLocation()+"\tsha256 ab") {
			t.Errorf("jobStateLine = %q", got)
		}
	}
}
