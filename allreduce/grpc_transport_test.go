package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	ringv1 "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// peerServers are gRPC peer servers on loopback, one per member, each hosting
// a Service.
type peerServers struct {
	members []string
	servers []*grpc.Server
	svcs    []*Service
	stores  []*security.Store // with TLS: each member's certificate
	addrs   map[string]string
	mu      sync.Mutex
}

func startPeerServers(t testing.TB, n int, opts ServiceOptions) *peerServers {
	return startPeerServersTLS(t, n, opts, nil)
}

// startPeerServersTLS starts n peer servers; with ca, member mI serves mutual
// TLS with the worker certificate ringtrain://worker/mI of ca.
func startPeerServersTLS(t testing.TB, n int, opts ServiceOptions, ca *security.CA) *peerServers {
	t.Helper()
	ps := &peerServers{addrs: map[string]string{}}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o := opts
		o.Logger = testLogger(t)
		sopts := ServerOptions()
		if ca != nil {
			o.TLS = workerStore(t, ca, fmt.Sprintf("m%d", i))
			sopts = SecureServerOptions(o.TLS, o.Logger)
			ps.stores = append(ps.stores, o.TLS)
		}
		svc := NewService(o)
		srv := grpc.NewServer(sopts...)
		svc.Register(srv)
		go srv.Serve(lis)
		name := fmt.Sprintf("m%d", i)
		ps.members = append(ps.members, name)
		ps.servers = append(ps.servers, srv)
		ps.svcs = append(ps.svcs, svc)
		ps.addrs[name] = lis.Addr().String()
	}
	t.Cleanup(ps.stop)
	return ps
}

func (ps *peerServers) stop() {
	for i := range ps.servers {
		ps.kill(i)
	}
}

// kill stops member i's server and service, as if its process had died.
func (ps *peerServers) kill(i int) {
	ps.svcs[i].Close()
	ps.servers[i].Stop()
}

func (ps *peerServers) resolve(_ context.Context, member string) (string, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	addr, ok := ps.addrs[member]
	if !ok {
		return "", fmt.Errorf("unknown member %q", member)
	}
	return addr, nil
}

// connect builds every member's ring over gRPC, concurrently, and closes the
// rings when the test ends.
func (ps *peerServers) connect(t testing.TB, cfg Config, opts LinkOptions) []*Ring {
	t.Helper()
	ctx := ctxTimeout(t, 20*time.Second)
	w := len(ps.members)
	rings := make([]*Ring, w)
	errs := make([]error, w)
	var wg sync.WaitGroup
	for r := range w {
		wg.Go(func() {
			c := cfg
			c.Members, c.Rank, c.Logger = ps.members, r, testLogger(t)
			opts := opts
			opts.Resolve = ps.resolve
			if ps.stores != nil {
				opts.TLS = ps.stores[r]
			}
			tr, err := ps.svcs[r].Connect(ctx, c, opts)
			if err != nil {
				errs[r] = err
				return
			}
			rings[r], errs[r] = NewRing(c, tr)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, r := range rings {
			if r != nil {
				r.Close()
			}
		}
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return rings
}

func TestGRPCAllReduce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lanes int
		seg   int
		opts  ServiceOptions
	}{
		{"tcp", 0, 4096, ServiceOptions{}},
		{"tcp1lane", 1, 4096, ServiceOptions{}},
		{"tcpBigSegments", 0, 0, ServiceOptions{}},
		{"tcp3lanesBigSegments", 3, 0, ServiceOptions{}},
		{"stream", -1, 4096, ServiceOptions{}},
		{"refusedLanes", 1, 4096, ServiceOptions{NoLanes: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const world = 3
			rng := rand.New(rand.NewPCG(seedFor(t), 7))
			ps := startPeerServers(t, world, tc.opts)
			rings := ps.connect(t, Config{Generation: 3, SegmentBytes: tc.seg, ProgressTimeout: 2 * time.Second}, LinkOptions{Lanes: tc.lanes})
			tr := rings[0].t.(*GRPCTransport)
			out, in := tr.Lanes()
			wantLanes := tc.lanes
			if wantLanes == 0 {
				wantLanes = defaultTCPLanes
			}
			if tc.lanes < 0 || tc.opts.NoLanes {
				wantLanes = 0
			}
			if out != wantLanes || in != wantLanes {
				t.Fatalf("lanes out %d in %d, want %d", out, in, wantLanes)
			}
			ctx := ctxTimeout(t, 20*time.Second)
			sizes := []int{0, 1, world + 1, 100003}
			if tc.seg == 0 {
				// Several default (4 MiB) segments per chunk. The largest size is
				// left to the full run: under the race detector (CI runs it with
				// -short) a 36 MB sum over loopback takes most of the deadline.
				sizes = append(sizes, 3<<20+1)
				if !testing.Short() {
					sizes = append(sizes, 9<<20+3)
				}
			}
			for _, n := range sizes {
				in := randomInputs(rng, world, n)
				got := cloneAll(in)
				res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, got[rank]) })
				for rank, x := range res {
					if x.err != nil {
						t.Fatalf("n %d: rank %d: %v", n, rank, x.err)
					}
				}
				checkSum(t, in, got, tc.seg)
			}
			bufs := cloneAll(randomInputs(rng, world, 5000))
			want := append([]float32(nil), bufs[2]...)
			res := onAll(rings, func(rank int, r *Ring) error {
				if err := r.Broadcast(ctx, 2, bufs[rank]); err != nil {
					return err
				}
				return r.Barrier(ctx)
			})
			for rank, x := range res {
				if x.err != nil {
					t.Fatalf("rank %d: %v", rank, x.err)
				}
				for i := range want {
					if bufs[rank][i] != want[i] {
						t.Fatalf("broadcast: rank %d element %d differs", rank, i)
					}
				}
			}
		})
	}
}

// TestGRPCPeerKilled kills a member's server mid-reduction and closes its
// ring (its process dying does both): the others must fail promptly.
func TestGRPCPeerKilled(t *testing.T) {
	for _, lanes := range []int{0, -1} {
		t.Run(fmt.Sprint("lanes", lanes), func(t *testing.T) {
			const world = 3
			ps := startPeerServers(t, world, ServiceOptions{})
			rings := ps.connect(t, Config{Generation: 1, SegmentBytes: 4096, ProgressTimeout: testTimeout}, LinkOptions{Lanes: lanes})
			ctx := ctxTimeout(t, 20*time.Second)
			in := randomInputs(rand.New(rand.NewPCG(1, 2)), world, 1<<20)
			var killedAt time.Time
			ends := make([]time.Time, world)
			onAll(rings, func(rank int, r *Ring) error {
				defer func() { ends[rank] = time.Now() }()
				if rank == 1 {
					h := r.Start(ctx, in[rank])
					time.Sleep(2 * time.Millisecond)
					killedAt = time.Now()
					ps.kill(1)
					r.Close()
					return h.Wait()
				}
				for {
					if err := r.AllReduce(ctx, in[rank]); err != nil {
						return err
					}
				}
			})
			for _, rank := range []int{0, 2} {
				err := rings[rank].failed()
				t.Logf("rank %d: %v after the kill: %v", rank, ends[rank].Sub(killedAt), err)
				if !errIs(err, ErrPeerLost, ErrTimeout) || ends[rank].Sub(killedAt) > 2*testTimeout {
					t.Errorf("rank %d: %v after %v, want ErrPeerLost or ErrTimeout within %v", rank, err, ends[rank].Sub(killedAt), 2*testTimeout)
				}
			}
		})
	}
}

func TestGRPCStaleGeneration(t *testing.T) {
	ps := startPeerServers(t, 2, ServiceOptions{})
	ctx := ctxTimeout(t, 10*time.Second)
	// Member m1 has moved to generation 6 (it waits for its left link).
	go ps.svcs[1].Connect(ctx, Config{Generation: 6, Members: ps.members, Rank: 1}, LinkOptions{Resolve: ps.resolve})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps.svcs[1].mu.Lock()
		newest := ps.svcs[1].newest
		ps.svcs[1].mu.Unlock()
		if newest == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, err := ps.svcs[0].Connect(ctx, Config{Generation: 5, Members: ps.members, Rank: 0}, LinkOptions{Resolve: ps.resolve})
	if !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("Connect of generation 5 to a member at 6: %v, want ErrStaleGeneration", err)
	}
}

// TestGRPCMalformedFrames feeds a real rank bytes that are not frames, on
// the gRPC stream and on a TCP lane.
func TestGRPCMalformedFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lanes int
		send  func(t *GRPCTransport) error
	}{
		{"streamGarbage", -1, func(t *GRPCTransport) error {
			return t.out.SendMsg(&ringv1.RingHello{From: "not a frame at all, but long enough to be mistaken for one"})
		}},
		{"laneGarbage", 1, func(t *GRPCTransport) error {
			_, err := t.outLanes.conns[0].Write(make([]byte, 100))
			return err
		}},
		{"laneOversized", 1, func(t *GRPCTransport) error {
			var b [headerSize]byte
			(&Header{Kind: KindAllReduce, DType: F32, Generation: 1, Len: 1 << 31}).encode(b[:])
			_, err := t.outLanes.conns[0].Write(b[:])
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := startPeerServers(t, 2, ServiceOptions{})
			ctx := ctxTimeout(t, 10*time.Second)
			trs := make([]Transport, 2)
			var wg sync.WaitGroup
			for r := range 2 {
				wg.Go(func() {
					var err error
					trs[r], err = ps.svcs[r].Connect(ctx, Config{Generation: 1, Members: ps.members, Rank: r}, LinkOptions{Resolve: ps.resolve, Lanes: tc.lanes})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			defer trs[0].Close()
			defer trs[1].Close()
			ring, err := NewRing(Config{Generation: 1, Members: ps.members, Rank: 1, ProgressTimeout: testTimeout, Logger: testLogger(t)}, trs[1])
			if err != nil {
				t.Fatal(err)
			}
			defer ring.Close()
			if err := tc.send(trs[0].(*GRPCTransport)); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			err = ring.AllReduce(ctx, make([]float32, 1000))
			if !errors.Is(err, ErrProtocol) || time.Since(began) > testTimeout {
				t.Fatalf("after %v: %v, want ErrProtocol", time.Since(began), err)
			}
		})
	}
}

// TestGRPCWrongMember checks that a link to an address now serving another
// member is refused at once.
func TestGRPCWrongMember(t *testing.T) {
	ps := startPeerServers(t, 2, ServiceOptions{})
	ps.svcs[1].opts.Member = "someone-else"
	ctx := ctxTimeout(t, 10*time.Second)
	_, err := ps.svcs[0].Connect(ctx, Config{Generation: 1, Members: ps.members, Rank: 0}, LinkOptions{Resolve: ps.resolve})
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("Connect to the wrong member: %v, want ErrProtocol", err)
	}
}

// TestGRPCConnectTimesOut checks that Connect gives up when the left
// neighbour never links, and leaks nothing.
func TestGRPCConnectTimesOut(t *testing.T) {
	ps := startPeerServers(t, 2, ServiceOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := ps.svcs[0].Connect(ctx, Config{Generation: 1, Members: ps.members, Rank: 0}, LinkOptions{Resolve: ps.resolve})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect without a left neighbour: %v, want context.DeadlineExceeded", err)
	}
}
