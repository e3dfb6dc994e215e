package main

import (
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestHealthCommand runs `ringtrain health` against a real gRPC health server: exit 0
// (no error) only for SERVING, an error naming the address and the reason for
// NOT_SERVING, an unknown service and a port nobody listens on.
func TestHealthCommand(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("ringtrain.v1.Coordinator", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("draining", healthpb.HealthCheckResponse_NOT_SERVING)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()

	// A port that was open a moment ago and is closed now: connection refused.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		args    []string
		ok      bool
		out     string // in the output when ok, in the error otherwise
		errAlso string
	}{
		{[]string{"--addr", addr}, true, addr + " (server): SERVING", ""},
		{[]string{"--addr", addr, "--service", "ringtrain.v1.Coordinator"}, true, "ringtrain.v1.Coordinator: SERVING", ""},
		{[]string{"--addr", addr, "--service", "draining"}, false, "draining: NOT_SERVING", addr},
		{[]string{"--addr", addr, "--service", "nope"}, false, "NotFound", addr},
		{[]string{"--addr", closedAddr, "--timeout", "2s"}, false, "connection refused", closedAddr},
		{[]string{"--addr", "7001"}, false, "--addr", ""},
		{[]string{"--addr", addr, "--timeout", "0s"}, false, "--timeout", ""},
	} {
		out, err := ringtrain(t, append([]string{"health"}, tc.args...)...)
		switch {
		case tc.ok && err != nil:
			t.Errorf("health %v: %v", tc.args, err)
		case tc.ok && !strings.Contains(out, tc.out):
			t.Errorf("health %v printed %q, want %q", tc.args, out, tc.out)
		case !tc.ok && err == nil:
			t.Errorf("health %v: no error (printed %q)", tc.args, out)
		case !tc.ok && (!strings.Contains(err.Error(), tc.out) || !strings.Contains(err.Error(), tc.errAlso)):
			t.Errorf("health %v: error %q, want one with %q and %q", tc.args, err, tc.out, tc.errAlso)
		}
	}
}
