package coordinator

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestClientNamesUnreachableReplicas: a call to replicas that refuse connections
// fails with the context's error and says, for each replica, why it failed
// ("connection refused"), not only that time ran out.
func TestClientNamesUnreachableReplicas(t *testing.T) {
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close() // nothing listens there any more: connections are refused
	}
	cl, err := NewClient(addrs, ClientOptions{AttemptTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cl.Status(ctx, false)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Status: %v, want context.DeadlineExceeded", err)
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a+": dial tcp "+a+": connect: connection refused") {
			t.Errorf("error %q does not say that %s refused the connection", err, a)
		}
	}
}

func TestAttemptsSummary(t *testing.T) {
	var a attempts
	if got := a.summary(); got != "no replica answered" {
		t.Errorf("empty summary %q", got)
	}
	refused := errors.New("dial tcp h:1: connect: connection refused")
	a.note("h:1", refused, false)
	a.note("h:2", context.DeadlineExceeded, false)
	a.note("h:1", context.DeadlineExceeded, true) // the call's own end does not hide the cause
	if got, want := a.summary(), "h:1: dial tcp h:1: connect: connection refused; h:2: no answer in time"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if got := dialCause(`connection error: desc = "transport: Error while dialing: dial tcp h:1: connect: connection refused"`); got != "dial tcp h:1: connect: connection refused" {
		t.Errorf("dialCause: %q", got)
	}
}
