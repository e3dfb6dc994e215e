//go:build linux

package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/tensor"
)

// TestDeviceReported checks the device a worker registers with: its backend's own
// name unless Config.Device overrides it.
func TestDeviceReported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend tensor.Backend
		device  string
		want    string
	}{
		{"default backend", nil, "", "cpu"},
		{"guarded backend", tensor.NewGuarded(), "", "cpu-guarded"},
		{"override", tensor.NewGuarded(), "rack3-cpu", "rack3-cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			co := coordinator.NewInmem(coordinator.InmemOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			job, err := jobspec.Encode(tinySpec(t.TempDir(), t.TempDir()), 2, 2)
			if err != nil {
				t.Fatal(err)
			}
			if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
				t.Fatal(err)
			}
			w, err := New(Config{ID: "w0", Coordinators: co, Logger: newTestLogger(t), Backend: tc.backend, Device: tc.device})
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			var runErr error
			var wg sync.WaitGroup
			wg.Go(func() { _, runErr = w.Run(rctx) })
			var got string
			waitFor(t, "w0 to register", func() bool {
				ws := co.State().GetWorkers()
				if len(ws) == 1 {
					got = ws[0].GetDevice()
				}
				return got != ""
			})
			stop()
			wg.Wait()
			if !errors.Is(runErr, context.Canceled) {
				t.Fatalf("Run: %v, want context.Canceled", runErr)
			}
			if got != tc.want {
				t.Fatalf("registered with device %q, want %q", got, tc.want)
			}
		})
	}
}
