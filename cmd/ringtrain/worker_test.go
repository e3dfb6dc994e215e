package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// TestWorkerLeaveExitCode runs `ringtrain worker` against a real coordinator and
// stops it (as SIGTERM does, by ending its context) before any job is finished: it
// leaves the cluster either way, and exits 0 by default but with --leave-exit-code
// when that is given, as a Kubernetes Job needs to replace the pod.
func TestWorkerLeaveExitCode(t *testing.T) {
	c := coordinator.MakeCluster(t, 1)
	c.Leader()
	node := c.Node(0)
	registered := func(id string) bool {
		return slices.ContainsFunc(node.State().GetWorkers(), func(w *pb.Worker) bool { return w.GetId() == id })
	}
	for _, tc := range []struct {
		id    string
		extra []string
		want  int // the exit status asked for; 0: no error
	}{
		{"w-default", nil, 0},
		{"w-job", []string{"--leave-exit-code", "143"}, 143},
	} {
		t.Run(tc.id, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := lis.Addr().String()
			lis.Close()
			root := newRoot()
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(append([]string{"--log-level", "warn", "worker", "--id", tc.id, "--coordinators", c.GRPCAddrs()[0],
				"--listen", addr, "--advertise", addr}, tc.extra...))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(ctx) }()
			coordinator.WaitFor(t, 10*time.Second, tc.id+" registered", func() bool { return registered(tc.id) })
			cancel()
			var err2 error
			select {
			case err2 = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the worker did not stop")
			}
			if registered(tc.id) {
				t.Errorf("%s is still a member after stopping: it did not leave", tc.id)
			}
			var ec interface{ ExitCode() int }
			switch {
			case tc.want == 0 && err2 != nil:
				t.Errorf("stopped worker: %v, want a clean exit", err2)
			case tc.want != 0 && (!errors.As(err2, &ec) || ec.ExitCode() != tc.want):
				t.Errorf("stopped worker: %v, want exit status %d", err2, tc.want)
			case tc.want != 0 && !strings.Contains(err2.Error(), "--leave-exit-code"):
				t.Errorf("error %q does not name --leave-exit-code", err2)
			}
		})
	}
	if _, err := ringtrain(t, "worker", "--coordinators", c.GRPCAddrs()[0], "--leave-exit-code", "256"); err == nil || !strings.Contains(err.Error(), "--leave-exit-code") {
		t.Errorf("--leave-exit-code 256: %v, want an error naming the flag", err)
	}
}
