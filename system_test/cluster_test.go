// Package system_test runs ringtrain as separate processes: a coordinator, workers
// and the submit command, over loopback.
package system_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/shard"
)

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a child process whose output goes to a log file shown when the test fails.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan error
	log    string
	killed atomic.Bool // the test SIGKILLed it on purpose
}

func (p *proc) markKilled() { p.killed.Store(true) }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

func start(t *testing.T, bin, dir, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, bin, dir, name, nil, args...)
}

// startEnv starts bin with args and extra environment variables; its output goes
// to dir/name.log. The process is stopped when the test ends.
func startEnv(t *testing.T, bin, dir, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		// Whatever happened, leave nothing running: SIGTERM, then SIGKILL.
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s ---\n%s", name, b)
		}
	})
	return p
}

func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // keep it for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v", p.name, d)
		return nil
	}
}

// TestProcessCluster builds the binary, starts one coordinator and two worker
// processes, submits a short job with `ringtrain submit`, and waits for the workers
// to finish it and exit.
func TestProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ringtrain")
	build := exec.Command("go", "build", "-o", bin, "../cmd/ringtrain")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	text := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:60_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: data, MinShards: 4}); err != nil {
		t.Fatal(err)
	}
	const steps = 8
	jobFile := filepath.Join(dir, "job.yaml")
	job := fmt.Sprintf(`model: {layers: 2, heads: 2, embd: 32}
data: %s
out: %s
seq_len: 16
micro_batch: 2
streams: 4
steps: %d
seed: 7
lr: 0.01
min_lr: 0.001
warmup_steps: 2
log_interval: 1
eval_interval: 0
eval_batches: 2
checkpoint_interval: 4
`, data, filepath.Join(dir, "run"), steps)
	if err := os.WriteFile(jobFile, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}

	raftAddr, grpcAddr := freeAddr(t), freeAddr(t)
	start(t, bin, dir, "coordinator", "coordinator", "--id", "c0", "--data-dir", filepath.Join(dir, "c0"),
		"--raft-addr", raftAddr, "--grpc-addr", grpcAddr, "--settle", "100ms", "--lease", "3s")
	submit := exec.Command(bin, "submit", jobFile, "--coordinators", grpcAddr, "--min-workers", "2", "--max-workers", "2")
	if out, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	var workers []*proc
	for i := range 2 {
		workers = append(workers, start(t, bin, dir, fmt.Sprintf("w%d", i), "worker", "--id", fmt.Sprintf("w%d", i),
			"--coordinators", grpcAddr, "--listen", freeAddr(t)))
	}
	for _, w := range workers {
		if err := w.wait(t, 60*time.Second); err != nil {
			t.Fatalf("%s exited with %v", w.name, err)
		}
	}

	cl, err := coordinator.NewClient([]string{grpcAddr}, coordinator.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, false)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if got := st.GetState().GetProgress().GetStep(); got != steps {
		t.Errorf("committed step %d, want %d", got, steps)
	}
	cks := st.GetState().GetCheckpoints()
	if len(cks) == 0 || cks[len(cks)-1].GetStep() != steps {
		t.Errorf("committed checkpoints %v, want the last at step %d", cks, steps)
	}
	out, _ := os.ReadFile(workers[0].log)
	out1, _ := os.ReadFile(workers[1].log)
	if !strings.Contains(string(out)+string(out1), fmt.Sprintf("done: step %d", steps)) {
		t.Errorf("no worker printed its summary")
	}
}
