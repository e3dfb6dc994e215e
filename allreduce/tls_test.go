package allreduce

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ringtrain/ringtrain/security"
)

func workerStore(t testing.TB, ca *security.CA, id string) *security.Store {
	t.Helper()
	st, err := ca.Store(security.Identity{Role: security.RoleWorker, ID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func testCA(t testing.TB) *security.CA {
	t.Helper()
	ca, err := security.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestGRPCAllReduceTLS: a ring of three over mutual TLS, its frames on TLS
// lanes, sums exactly as over plain TCP.
func TestGRPCAllReduceTLS(t *testing.T) {
	const world = 3
	ps := startPeerServersTLS(t, world, ServiceOptions{}, testCA(t))
	rings := ps.connect(t, Config{Generation: 2, SegmentBytes: 4096, ProgressTimeout: 2 * time.Second}, LinkOptions{Lanes: 2})
	if out, in := rings[0].t.(*GRPCTransport).Lanes(); out != 2 || in != 2 {
		t.Fatalf("lanes out %d in %d, want 2", out, in)
	}
	rng := rand.New(rand.NewPCG(seedFor(t), 11))
	ctx := ctxTimeout(t, 20*time.Second)
	for _, n := range []int{0, 1, world + 1, 100003} {
		in := randomInputs(rng, world, n)
		got := cloneAll(in)
		for rank, x := range onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, got[rank]) }) {
			if x.err != nil {
				t.Fatalf("n %d: rank %d: %v", n, rank, x.err)
			}
		}
		checkSum(t, in, got, 4096)
	}
}

// TestGRPCTLSRefusals: a link is refused from a certificate of another CA, from a
// worker certificate that is not the member the hello names, from a member of no
// current plan, and from a client without a certificate; a TLS dialler insists
// on lanes.
func TestGRPCTLSRefusals(t *testing.T) {
	ca := testCA(t)
	ps := startPeerServersTLS(t, 2, ServiceOptions{}, ca)
	// m1 reaches generation 5 with members m0 and m1; it waits for m0's link.
	m1ctx, m1cancel := context.WithCancel(context.Background())
	m1done := make(chan error, 1)
	go func() {
		_, err := ps.svcs[1].Connect(m1ctx, Config{Generation: 5, Members: ps.members, Rank: 1},
			LinkOptions{Resolve: ps.resolve, TLS: ps.stores[1]})
		m1done <- err
	}()
	defer func() {
		m1cancel()
		<-m1done
	}()
	coordinatorWait(t, func() bool {
		ps.svcs[1].mu.Lock()
		defer ps.svcs[1].mu.Unlock()
		return ps.svcs[1].newest == 5
	})

	dialAs := func(st *security.Store, members []string, lanes int) error {
		svc := NewService(ServiceOptions{Logger: testLogger(t), TLS: st})
		defer svc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := svc.Connect(ctx, Config{Generation: 5, Members: members, Rank: 0},
			LinkOptions{Resolve: ps.resolve, TLS: st, Lanes: lanes})
		return err
	}
	for name, tc := range map[string]struct {
		st      *security.Store
		members []string
		want    error
	}{
		// The handshake fails on every attempt until the set-up deadline.
		"another CA":                      {workerStore(t, testCA(t), "m0"), ps.members, context.DeadlineExceeded},
		"a certificate of another member": {workerStore(t, ca, "m9"), ps.members, ErrProtocol},
		"a worker not in the plan":        {workerStore(t, ca, "m9"), []string{"m9", "m1"}, ErrProtocol},
	} {
		t.Run(name, func(t *testing.T) {
			err := dialAs(tc.st, tc.members, 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Connect: %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
	if err := dialAs(ps.stores[0], ps.members, -1); !errors.Is(err, ErrBadConfig) {
		t.Errorf("a TLS link without lanes: %v, want ErrBadConfig", err)
	}
	// Plain text to a TLS peer server: nothing answers, not even health.
	cc, err := grpc.NewClient(ps.addrs["m1"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a plain-text health check was answered")
	}
	// A raw lane connection without a certificate is dropped in the handshake.
	ps.svcs[1].mu.Lock()
	var laneAddr string
	for _, l := range ps.svcs[1].listeners {
		laneAddr = l.Addr().String()
	}
	ps.svcs[1].mu.Unlock()
	if laneAddr != "" {
		c, err := net.Dial("tcp", laneAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(make([]byte, laneTokenBytes+1))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		if n, err := c.Read(b[:]); err == nil {
			t.Errorf("a plain lane read %d bytes back", n)
		}
		c.Close()
	}
}

// coordinatorWait polls cond for up to 5 s.
func coordinatorWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPeerPolicy: only workers open ring links; any member may check health.
func TestPeerPolicy(t *testing.T) {
	p := PeerPolicy()
	none := func(string) (string, bool) { return "", false }
	for _, role := range security.Roles {
		who := security.Identity{Role: role, ID: "x"}
		if err := p.Decide("/ringtrain.v1.RingLink/Open", who, none); (err == nil) != (role == security.RoleWorker) {
			t.Errorf("RingLink/Open by %s: %v", role, err)
		}
		if err := p.Decide("/grpc.health.v1.Health/Check", who, none); err != nil {
			t.Errorf("health check by %s: %v", role, err)
		}
	}
}

// TestLaneNeedsTheLinksCertificate: a TLS lane that presents a valid token is
// still refused unless its certificate is the link's sender's.
func TestLaneNeedsTheLinksCertificate(t *testing.T) {
	ca := testCA(t)
	s := NewService(ServiceOptions{DataAddress: "127.0.0.1:0", TLS: workerStore(t, ca, "m1"), Logger: testLogger(t)})
	defer s.Close()
	l := &serverLink{key: linkKey{gen: 1, from: "m0", to: "m1"}, lanes: make([]net.Conn, 1), token: "0123456789abcdef",
		ready: make(chan struct{}), welcomed: make(chan struct{}), done: make(chan struct{}), stopped: make(chan struct{})}
	s.mu.Lock()
	addr, err := s.laneAddress(context.Background())
	s.tokens[l.token] = l
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// lane dials addr as id, sends the token, and reports whether the server
	// kept the connection (a read times out) or dropped it.
	lane := func(id string) (kept bool) {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		st := workerStore(t, ca, id)
		bc := newBatchedConn(raw)
		c, _, err := security.DialConn(context.Background(), bc, st.ClientConfig(security.Expect{Roles: []security.Role{security.RoleWorker}, ID: "m1"}), time.Second)
		if err != nil {
			return false
		}
		bc.batching = true
		c.Write(append([]byte(l.token), 0))
		flushLane(c)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var b [1]byte
		_, err = c.Read(b[:])
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	if lane("m9") {
		t.Error("a lane with another worker's certificate was kept")
	}
	select {
	case <-l.ready:
		t.Fatal("the link took a lane of another worker")
	default:
	}
	if !lane("m0") {
		t.Error("a lane with the link's certificate was dropped")
	}
	select {
	case <-l.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the link's own lane did not attach")
	}
	closeLane(l.lanes[0])
}
