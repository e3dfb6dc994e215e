package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout is the rings' progress timeout in these tests: heartbeats every
// quarter of it must arrive in time even on a loaded 2-core machine.
const testTimeout = 500 * time.Millisecond

// faultCase is one all-reduce run with a fault injected at a chosen frame.
type faultCase struct {
	t       *testing.T
	rng     *rand.Rand
	world   int
	rings   []*Ring
	net     *InmemNetwork
	victim  int    // rank whose frame triggers the fault
	atFrame uint64 // index of the victim's data frame that triggers it

	mu      sync.Mutex
	faultAt time.Time
	fired   atomic.Bool
}

// newFaultCase builds a ring of 2..6 members (from the seed) with a short
// progress timeout and picks a random data frame of a random rank.
func newFaultCase(t *testing.T, seed uint64) *faultCase {
	rng := rand.New(rand.NewPCG(seed, 99))
	world := 2 + rng.IntN(5)
	rings, net := makeRings(t, world, Config{Generation: 11, SegmentBytes: 1024, ProgressTimeout: testTimeout})
	frames := 2 * (world - 1) * ((20000/world + 255) / 256)
	fc := &faultCase{t: t, rng: rng, world: world, rings: rings, net: net, victim: rng.IntN(world), atFrame: uint64(rng.IntN(frames))}
	t.Logf("seed %d: world %d, fault at rank %d data frame %d of %d", seed, world, fc.victim, fc.atFrame, frames)
	return fc
}

// hook installs act for the chosen frame; every other frame passes.
func (fc *faultCase) hook(act func(ev Event) Action) {
	var count atomic.Uint64
	fc.net.SetHook(func(ev Event) Action {
		if ev.From != fc.victim || ev.Header.Kind == KindHeartbeat {
			return Action{}
		}
		if count.Add(1)-1 != fc.atFrame {
			return Action{}
		}
		fc.mark()
		return act(ev)
	})
}

func (fc *faultCase) mark() {
	fc.mu.Lock()
	fc.faultAt = time.Now()
	fc.mu.Unlock()
	fc.fired.Store(true)
}

// run all-reduces on every rank and returns each rank's error and how long
// after the fault it returned.
func (fc *faultCase) run(ctxs ...context.Context) []rankResult {
	ctx := ctxTimeout(fc.t, 20*time.Second)
	in := randomInputs(fc.rng, fc.world, 20000)
	want := ringOrderSum(in, 1024/4)
	res := make([]rankResult, fc.world)
	ends := make([]time.Time, fc.world)
	var wg sync.WaitGroup
	for i, r := range fc.rings {
		c := ctx
		if i < len(ctxs) && ctxs[i] != nil {
			c = ctxs[i]
		}
		wg.Go(func() {
			res[i].err = r.AllReduce(c, in[i])
			ends[i] = time.Now()
		})
	}
	wg.Wait()
	if !fc.fired.Load() {
		fc.t.Fatalf("the fault never fired; errors %v", res)
	}
	for i := range res {
		res[i].took = max(0, ends[i].Sub(fc.faultAt))
		fc.t.Logf("rank %d: %v after the fault: %v", i, res[i].took, res[i].err)
		// A rank that got everything it needed before the fault reached it
		// finishes, and then its result must be right.
		if res[i].err == nil {
			for k := range want {
				if in[i][k] != want[k] {
					fc.t.Fatalf("rank %d finished with element %d = %v, want %v", i, k, in[i][k], want[k])
				}
			}
		}
	}
	return res
}

// expect checks that rank (unless -1) got an error wrapping want, and that every other
// rank either finished (with the right result, which run checked) or failed
// with one of others, all within limit of the fault; then that every ring
// refuses further operations, as failures travel round the ring.
func (fc *faultCase) expect(res []rankResult, limit time.Duration, rank int, want error, others ...error) {
	fc.t.Helper()
	if rank >= 0 && !errors.Is(res[rank].err, want) {
		fc.t.Errorf("rank %d: %v, want %v", rank, res[rank].err, want)
	}
	requireFailed(fc.t, res, limit, true, append(others, want)...)
	waitAllUnusable(fc.t, fc.rings)
}

func faultSeeds(t *testing.T, n int, f func(t *testing.T, seed uint64)) {
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("ALLREDUCE_SEED"); s != "" { // replay one seed
		base, n = must(strconv.ParseUint(s, 10, 64)), 1
	}
	for i := range n {
		seed := base + uint64(i)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { f(t, seed) })
	}
}

func TestFaultKillRank(t *testing.T) {
	faultSeeds(t, 5, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		fc.hook(func(Event) Action { return Action{Kill: true} })
		res := fc.run()
		fc.expect(res, testTimeout, fc.victim, ErrPeerLost)
		fc.expect(res, testTimeout, (fc.victim+1)%fc.world, ErrPeerLost)
	})
}

func TestFaultCutLink(t *testing.T) {
	faultSeeds(t, 5, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		fc.hook(func(Event) Action { return Action{Cut: true} })
		res := fc.run()
		fc.expect(res, testTimeout, fc.victim, ErrPeerLost)
		fc.expect(res, testTimeout, (fc.victim+1)%fc.world, ErrPeerLost)
	})
}

func TestFaultDroppedFrame(t *testing.T) {
	faultSeeds(t, 5, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		fc.hook(func(Event) Action { return Action{Drop: true} })
		fc.expect(fc.run(), testTimeout, (fc.victim+1)%fc.world, ErrProtocol, ErrPeerLost)
	})
}

func TestFaultDroppedLastFrameFoundByHeartbeat(t *testing.T) {
	const world = 3
	rings, net := makeRings(t, world, Config{Generation: 1, SegmentBytes: 64, ProgressTimeout: testTimeout})
	last := Header{Kind: KindAllReduce, Step: uint32(2*world - 3), Segment: 0}
	var dropped atomic.Bool
	net.SetHook(func(ev Event) Action {
		if ev.From == 0 && ev.Header.Kind == last.Kind && ev.Header.Step == last.Step && !dropped.Swap(true) {
			return Action{Drop: true}
		}
		return Action{}
	})
	ctx := ctxTimeout(t, 10*time.Second)
	in := randomInputs(rand.New(rand.NewPCG(1, 1)), world, 3)
	res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, in[rank]) })
	if !errors.Is(res[1].err, ErrProtocol) || res[1].took > testTimeout {
		t.Fatalf("rank 1: %v after %v, want ErrProtocol (found by a heartbeat) within %v", res[1].err, res[1].took, testTimeout)
	}
	t.Logf("rank 1: %v", res[1].err)
}

func TestFaultDelay(t *testing.T) {
	faultSeeds(t, 2, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		// Delays shorter than the timeout only slow the ring down.
		fc.net.SetHook(func(ev Event) Action {
			if ev.Header.Kind != KindHeartbeat && ev.Header.Segment == 0 && ev.Header.Step < 2 {
				fc.mark()
				return Action{Delay: testTimeout / 3}
			}
			return Action{}
		})
		for r, x := range fc.run() {
			if x.err != nil {
				t.Fatalf("rank %d: %v", r, x.err)
			}
		}
	})
	faultSeeds(t, 3, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		fc.hook(func(Event) Action { return Action{Delay: 10 * testTimeout} })
		fc.expect(fc.run(), 3*testTimeout, (fc.victim+1)%fc.world, ErrTimeout, ErrPeerLost)
	})
}

func TestFaultStalledRank(t *testing.T) {
	faultSeeds(t, 3, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		fc.hook(func(Event) Action { return Action{Stall: true} })
		ctxs := make([]context.Context, fc.world)
		stalledCtx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctxs[fc.victim] = stalledCtx
		// The stalled rank itself returns only once resumed (or cancelled).
		go func() {
			deadline := time.Now().Add(10 * time.Second)
			for !fc.fired.Load() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(5 * testTimeout)
			fc.net.Resume(fc.victim)
		}()
		res := fc.run(ctxs...)
		if !errIs(res[fc.victim].err, ErrPeerLost, ErrTimeout) {
			t.Errorf("stalled rank after resuming: %v", res[fc.victim].err)
		}
		res[fc.victim].took = 0 // it returns only once resumed
		fc.expect(res, 3*testTimeout, -1, ErrTimeout, ErrPeerLost)
		// Its neighbours stop hearing from it (and it from them: only its
		// transport is frozen, not its timers); whichever times out first fails
		// its ring, perhaps after its operation finished, and the failure
		// reaches the others as a lost peer.
		timedOut := false
		for _, r := range fc.rings {
			timedOut = timedOut || errors.Is(r.failed(), ErrTimeout)
		}
		if !timedOut {
			t.Error("no ring failed with ErrTimeout")
		}
	})
}

func TestFaultMalformedFrames(t *testing.T) {
	rewrites := map[string]struct {
		f    func(h *Header, p []byte) []byte
		want error
	}{
		"oversized":     {func(h *Header, p []byte) []byte { h.Len = MaxPayload + 1; return p }, ErrProtocol},
		"longer":        {func(h *Header, p []byte) []byte { h.Len += 4; return append(p, 0, 0, 0, 0) }, ErrProtocol},
		"short":         {func(h *Header, p []byte) []byte { h.Len = 0; return nil }, ErrProtocol},
		"segment":       {func(h *Header, p []byte) []byte { h.Segment++; return p }, ErrProtocol},
		"step":          {func(h *Header, p []byte) []byte { h.Step += 2; return p }, ErrProtocol},
		"operation":     {func(h *Header, p []byte) []byte { h.Seq++; return p }, ErrProtocol},
		"kind":          {func(h *Header, p []byte) []byte { h.Kind = KindBroadcast; return p }, ErrProtocol},
		"dtype":         {func(h *Header, p []byte) []byte { h.DType = BF16; return p }, ErrProtocol},
		"oldGeneration": {func(h *Header, p []byte) []byte { h.Generation--; return p }, ErrStaleGeneration},
		"newGeneration": {func(h *Header, p []byte) []byte { h.Generation++; return p }, ErrStaleGeneration},
	}
	for name, rw := range rewrites {
		t.Run(name, func(t *testing.T) {
			fc := newFaultCase(t, uint64(time.Now().UnixNano()))
			fc.hook(func(Event) Action { return Action{Rewrite: rw.f} })
			fc.expect(fc.run(), testTimeout, (fc.victim+1)%fc.world, rw.want, ErrPeerLost)
		})
	}
}

func TestStaleGenerationRefused(t *testing.T) {
	const world = 4
	net := NewInmemNetwork(world, 4)
	members := []string{"a", "b", "c", "d"}
	rings := make([]*Ring, world)
	for r := range world {
		gen := uint64(5)
		if r == 2 {
			gen = 4
		}
		ring, err := NewRing(Config{Generation: gen, Members: members, Rank: r, ProgressTimeout: testTimeout, Logger: testLogger(t)}, net.Transport(r))
		if err != nil {
			t.Fatal(err)
		}
		rings[r] = ring
		defer ring.Close()
	}
	ctx := ctxTimeout(t, 10*time.Second)
	in := randomInputs(rand.New(rand.NewPCG(5, 5)), world, 1000)
	res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, in[rank]) })
	stale := false
	for _, x := range res {
		stale = stale || errors.Is(x.err, ErrStaleGeneration)
	}
	if !stale {
		t.Fatal("no rank reported ErrStaleGeneration")
	}
	requireAll(t, res, testTimeout, ErrStaleGeneration, ErrPeerLost)
}

func TestMismatchedOperations(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)
	t.Run("kind", func(t *testing.T) {
		rings, _ := makeRings(t, 3, Config{Generation: 1, ProgressTimeout: testTimeout})
		res := onAll(rings, func(rank int, r *Ring) error {
			buf := make([]float32, 10)
			if rank == 1 {
				return r.Broadcast(ctx, 0, buf)
			}
			return r.AllReduce(ctx, buf)
		})
		requireAll(t, res, testTimeout, ErrProtocol, ErrPeerLost)
	})
	t.Run("length", func(t *testing.T) {
		rings, _ := makeRings(t, 3, Config{Generation: 1, ProgressTimeout: testTimeout})
		res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, make([]float32, 10+rank)) })
		requireAll(t, res, testTimeout, ErrProtocol, ErrPeerLost)
	})
	t.Run("root", func(t *testing.T) {
		rings, _ := makeRings(t, 3, Config{Generation: 1, ProgressTimeout: testTimeout})
		// Ranks 0 and 1 both think they are the root: they send and finish;
		// rank 2 finds the wrong root, and the failure reaches the others' rings.
		res := onAll(rings, func(rank int, r *Ring) error { return r.Broadcast(ctx, rank%2, make([]float32, 10)) })
		if !errors.Is(res[2].err, ErrProtocol) {
			t.Fatalf("rank 2: %v, want ErrProtocol", res[2].err)
		}
		waitAllUnusable(t, rings)
	})
}

func TestCancelAbortsPromptly(t *testing.T) {
	faultSeeds(t, 4, func(t *testing.T, seed uint64) {
		fc := newFaultCase(t, seed)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctxs := make([]context.Context, fc.world)
		ctxs[fc.victim] = ctx
		fc.hook(func(Event) Action { cancel(); return Action{} })
		res := fc.run(ctxs...)
		if res[fc.victim].err == nil {
			// The cancel landed after the victim had sent and received everything
			// (fault at its last frames): completing is then the correct outcome,
			// and fc.run has checked its result.
			t.Logf("seed %d: the victim finished before it saw the cancel", seed)
			return
		}
		if res[fc.victim].took > 50*time.Millisecond {
			t.Errorf("cancelled rank took %v, want under 50ms", res[fc.victim].took)
		}
		fc.expect(res, testTimeout, fc.victim, context.Canceled, ErrPeerLost)
	})
}

func TestCancelWhileQueued(t *testing.T) {
	rings, _ := makeRings(t, 2, Config{Generation: 1, ProgressTimeout: 10 * time.Second})
	ctx := ctxTimeout(t, 10*time.Second)
	// Rank 1 never starts, so rank 0's first operation waits; its second one
	// waits for the first, and cancelling it must end it at once.
	first := rings[0].Start(ctx, make([]float32, 100))
	qctx, cancel := context.WithCancel(ctx)
	second := rings[0].Start(qctx, make([]float32, 100))
	time.Sleep(20 * time.Millisecond)
	began := time.Now()
	cancel()
	if err := second.Wait(); !errors.Is(err, context.Canceled) || time.Since(began) > 50*time.Millisecond {
		t.Fatalf("queued operation: %v after %v", err, time.Since(began))
	}
	if err := first.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("the running operation ends with the ring: %v", err)
	}
	if err := rings[1].AllReduce(ctx, make([]float32, 100)); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("neighbour of the failed ring: %v, want ErrPeerLost", err)
	}
}

func TestCloseAbortsOperations(t *testing.T) {
	rings, _ := makeRings(t, 3, Config{Generation: 1, ProgressTimeout: 10 * time.Second})
	ctx := ctxTimeout(t, 10*time.Second)
	h := rings[0].Start(ctx, make([]float32, 100))
	time.Sleep(10 * time.Millisecond)
	began := time.Now()
	rings[0].Close()
	if err := h.Wait(); !errors.Is(err, ErrClosed) || time.Since(began) > 50*time.Millisecond {
		t.Fatalf("operation of a closed ring: %v after %v", err, time.Since(began))
	}
	if err := rings[0].Barrier(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("operation after Close: %v", err)
	}
	res := onAll(rings[1:], func(_ int, r *Ring) error { return r.AllReduce(ctx, make([]float32, 100)) })
	requireAll(t, res, testTimeout, ErrPeerLost)
}

func TestFailedRingRefusesOperations(t *testing.T) {
	rings, net := makeRings(t, 3, Config{Generation: 1, ProgressTimeout: testTimeout})
	ctx := ctxTimeout(t, 10*time.Second)
	net.Cut(1)
	res := onAll(rings, func(_ int, r *Ring) error { return r.AllReduce(ctx, make([]float32, 100)) })
	requireAll(t, res, testTimeout, ErrPeerLost)
	for rank, r := range rings {
		err := r.AllReduce(ctx, make([]float32, 100))
		if !errors.Is(err, ErrRingFailed) || !errors.Is(err, ErrPeerLost) {
			t.Errorf("rank %d after a failure: %v, want ErrRingFailed wrapping ErrPeerLost", rank, err)
		}
	}
}

// TestSkewedStartDoesNotTimeOut checks that a rank reaching an operation long
// after the others (but alive) trips no timeout: heartbeats keep links alive.
func TestSkewedStartDoesNotTimeOut(t *testing.T) {
	rings, _ := makeRings(t, 4, Config{Generation: 1, SegmentBytes: 256, ProgressTimeout: testTimeout})
	ctx := ctxTimeout(t, 10*time.Second)
	in := randomInputs(rand.New(rand.NewPCG(9, 9)), 4, 5000)
	got := cloneAll(in)
	res := onAll(rings, func(rank int, r *Ring) error {
		if rank == 2 {
			time.Sleep(4 * testTimeout)
		}
		return r.AllReduce(ctx, got[rank])
	})
	for rank, x := range res {
		if x.err != nil {
			t.Fatalf("rank %d: %v", rank, x.err)
		}
	}
	checkSum(t, in, got, 256)
}

// TestIdleRingNoticesLostNeighbour checks that a neighbour that goes away
// between operations fails the next one at once.
func TestIdleRingNoticesLostNeighbour(t *testing.T) {
	rings, _ := makeRings(t, 3, Config{Generation: 1, ProgressTimeout: testTimeout})
	ctx := ctxTimeout(t, 10*time.Second)
	rings[1].Close()
	time.Sleep(testTimeout) // heartbeats run into the closed links
	res := onAll([]*Ring{rings[0], rings[2]}, func(_ int, r *Ring) error { return r.AllReduce(ctx, make([]float32, 10)) })
	requireAll(t, res, 20*time.Millisecond, ErrPeerLost)
}

func errIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// failed returns the ring's first failure, or nil.
func (r *Ring) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failure
}

// waitAllUnusable polls until every ring refuses operations (failures travel
// round the ring).
func waitAllUnusable(t *testing.T, rings []*Ring) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for _, r := range rings {
		for {
			r.mu.Lock()
			err := r.unusable()
			r.mu.Unlock()
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rank %d still usable", r.rank)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
