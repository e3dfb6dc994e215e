package coordinator

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// procCluster is three `ringtrain coordinator` processes on loopback.
type procCluster struct {
	t     *testing.T
	bin   string
	dir   string
	peers string
	grpc  []string
	raft  []string
	args  []string // extra flags for every replica

	mu    sync.Mutex
	procs []*exec.Cmd
	waits []chan struct{}
}

func (pc *procCluster) start(i int) {
	pc.t.Helper()
	args := append([]string{"coordinator", "--log-level", "warn",
		"--id", fmt.Sprintf("c%d", i), "--data-dir", filepath.Join(pc.dir, fmt.Sprintf("c%d", i)),
		"--raft-addr", pc.raft[i], "--grpc-addr", pc.grpc[i], "--peers", pc.peers}, pc.args...)
	cmd := exec.Command(pc.bin, args...)
	logf, err := os.Create(filepath.Join(pc.dir, fmt.Sprintf("c%d.log", i)))
	if err != nil {
		pc.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		pc.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	pc.mu.Lock()
	pc.procs[i], pc.waits[i] = cmd, done
	pc.mu.Unlock()
}

func (pc *procCluster) signal(i int, sig syscall.Signal) {
	pc.mu.Lock()
	cmd, done := pc.procs[i], pc.waits[i]
	pc.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
		if sig == syscall.SIGTERM && cmd.ProcessState.ExitCode() != 0 {
			pc.t.Errorf("c%d exited with %v after SIGTERM, want a clean exit", i, cmd.ProcessState)
		}
	case <-time.After(10 * time.Second):
		pc.t.Errorf("c%d did not stop within 10 s of %v", i, sig)
		cmd.Process.Kill()
		<-done
	}
	pc.mu.Lock()
	pc.procs[i] = nil
	pc.mu.Unlock()
}

// TestProcessFailover runs three real `ringtrain coordinator` processes on loopback,
// kills the leader with SIGKILL again and again, and measures how long it takes until
// a write (Register through the Client) succeeds on the new leader. It checks each
// fail-over takes under 3 s and logs the median and maximum. The number of trials
// is 10, or RINGTRAIN_FAILOVER_TRIALS; -short skips it.
func TestProcessFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	trials := 10
	if v := os.Getenv("RINGTRAIN_FAILOVER_TRIALS"); v != "" {
		trials, _ = strconv.Atoi(v)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ringtrain")
	build := exec.Command("go", "build", "-o", bin, "github.com/ringtrain/ringtrain/cmd/ringtrain")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ports := freePorts(t, 6)
	pc := &procCluster{t: t, bin: bin, dir: dir, procs: make([]*exec.Cmd, 3), waits: make([]chan struct{}, 3),
		// The command's default Raft timing: heartbeat and election timeouts 500 ms,
		// leader lease 250 ms.
		args: []string{"--lease", "10s"}}
	var peers []string
	for i := range 3 {
		pc.raft = append(pc.raft, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
		pc.grpc = append(pc.grpc, fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]))
		peers = append(peers, fmt.Sprintf("c%d=%s", i, pc.raft[i]))
	}
	pc.peers = strings.Join(peers, ",")
	for i := range 3 {
		pc.start(i)
	}
	t.Cleanup(func() {
		for i := range 3 {
			pc.signal(i, syscall.SIGTERM)
		}
		if t.Failed() {
			for i := range 3 {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("c%d.log", i)))
				t.Logf("c%d log:\n%s", i, b)
			}
		}
	})
	cl, err := NewClient(pc.grpc, ClientOptions{AttemptTimeout: 500 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var took []time.Duration
	for trial := range trials {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := cl.Status(ctx, false)
		if err != nil {
			cancel()
			t.Fatalf("trial %d: status: %v", trial, err)
		}
		leader := int(st.GetLeaderId()[1] - '0')
		pc.signal(leader, syscall.SIGKILL)
		killed := time.Now()
		if _, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: fmt.Sprintf("w%d", trial), Address: "x:1"}); err != nil {
			cancel()
			t.Fatalf("trial %d: write after killing c%d: %v", trial, leader, err)
		}
		took = append(took, time.Since(killed))
		// Bring the replica back and wait until it has caught up.
		pc.start(leader)
		want := st.GetCommitIndex() + 1
		WaitFor(t, 20*time.Second, fmt.Sprintf("c%d to catch up", leader), func() bool {
			one, err := NewClient([]string{pc.grpc[leader]}, ClientOptions{AttemptTimeout: 200 * time.Millisecond})
			if err != nil {
				return false
			}
			defer one.Close()
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer scancel()
			s, err := one.Status(sctx, true)
			return err == nil && s.GetAppliedIndex() >= want && s.GetLeaderId() != ""
		})
		cancel()
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	t.Logf("leader SIGKILL -> first successful write, %d trials (raft heartbeat/election 500 ms, leader lease 250 ms): median %v, max %v, all %v",
		len(took), median.Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond), took)
	for i, d := range took {
		if d > 3*time.Second {
			t.Errorf("trial %d: fail-over took %v, want under 3 s", i, d)
		}
	}
}
