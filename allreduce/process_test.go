package allreduce

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// childRankEnv, when set, makes the test binary run childRank instead of the
// tests: it is the rank (in a ring of 3) the child plays.
const childRankEnv = "ALLREDUCE_TEST_CHILD_RANK"

// childRank serves a peer server on loopback, prints its address, reads the
// members' addresses from stdin, joins the ring and all-reduces until killed.
func childRank() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child rank:", err)
		return 1
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	svc := NewService(ServiceOptions{})
	srv := grpc.NewServer(ServerOptions()...)
	svc.Register(srv)
	go srv.Serve(lis)
	fmt.Println(lis.Addr().String())
	var addrs map[string]string
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&addrs); err != nil {
		return fail(err)
	}
	ctx := context.Background()
	cfg := Config{Generation: 1, Members: []string{"m0", "m1", "m2"}, Rank: 2, ProgressTimeout: time.Second}
	t, err := svc.Connect(ctx, cfg, LinkOptions{Resolve: func(_ context.Context, m string) (string, error) { return addrs[m], nil }})
	if err != nil {
		return fail(err)
	}
	ring, err := NewRing(cfg, t)
	if err != nil {
		return fail(err)
	}
	buf := make([]float32, 4<<20)
	for {
		if err := ring.AllReduce(ctx, buf); err != nil {
			return fail(err)
		}
	}
}

// TestProcessKilledMidReduction runs rank 2 of a ring of 3 as a separate
// process, SIGKILLs it in the middle of all-reducing, and checks that the
// two ranks left fail promptly.
func TestProcessKilledMidReduction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	ps := startPeerServers(t, 2, ServiceOptions{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRankEnv+"=2")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child address: %v", err)
	}
	ps.mu.Lock()
	ps.addrs["m2"] = line[:len(line)-1]
	addrs, _ := json.Marshal(ps.addrs)
	ps.mu.Unlock()
	if _, err := stdin.Write(addrs); err != nil {
		t.Fatal(err)
	}

	ctx := ctxTimeout(t, 30*time.Second)
	members := []string{"m0", "m1", "m2"}
	rings := make([]*Ring, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			cfg := Config{Generation: 1, Members: members, Rank: r, ProgressTimeout: time.Second, Logger: testLogger(t)}
			tr, err := ps.svcs[r].Connect(ctx, cfg, LinkOptions{Resolve: ps.resolve})
			if err != nil {
				t.Error(err)
				return
			}
			rings[r], err = NewRing(cfg, tr)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	defer rings[0].Close()
	defer rings[1].Close()

	ops := make(chan struct{}, 100)
	killed := make(chan time.Time, 1)
	go func() {
		for range 3 { // kill it in the middle of the fourth all-reduce
			<-ops
		}
		time.Sleep(5 * time.Millisecond)
		killed <- time.Now()
		cmd.Process.Kill()
	}()
	ends := make([]time.Time, 2)
	res := onAll(rings, func(rank int, r *Ring) error {
		defer func() { ends[rank] = time.Now() }()
		buf := make([]float32, 4<<20)
		for {
			if err := r.AllReduce(ctx, buf); err != nil {
				return err
			}
			if rank == 0 {
				ops <- struct{}{}
			}
		}
	})
	var killedAt time.Time
	select {
	case killedAt = <-killed:
	default:
	}
	for rank, x := range res {
		took := ends[rank].Sub(killedAt)
		t.Logf("rank %d: %v after the kill: %v", rank, took, x.err)
		if !errIs(x.err, ErrPeerLost, ErrTimeout) || killedAt.IsZero() || took > 2*time.Second {
			t.Errorf("rank %d: %v after %v, want ErrPeerLost or ErrTimeout within 2s of the kill", rank, x.err, took)
		}
	}
}
