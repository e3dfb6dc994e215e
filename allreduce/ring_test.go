package allreduce

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

func TestAllReduceMatchesRingOrderSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 1))
	ctx := ctxTimeout(t, time.Minute)
	for world := 1; world <= 16; world++ {
		for _, segBytes := range []int{4 * (1 + rng.IntN(6)), 0} {
			rings, _ := makeRings(t, world, Config{Generation: 7, SegmentBytes: segBytes})
			sizes := []int{0, 1, max(world-1, 0), world + 1, 3*world + 1, 1 + rng.IntN(300)}
			if segBytes == 0 {
				sizes = append(sizes, 1+rng.IntN(20000))
				if world <= 4 {
					sizes = append(sizes, 1<<19+rng.IntN(1000))
				}
			}
			for _, n := range sizes {
				in := randomInputs(rng, world, n)
				got := cloneAll(in)
				res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, got[rank]) })
				for rank, x := range res {
					if x.err != nil {
						t.Fatalf("world %d n %d seg %d: rank %d: %v", world, n, segBytes, rank, x.err)
					}
				}
				checkSum(t, in, got, segBytes)
			}
			for _, r := range rings {
				r.Close()
			}
		}
	}
}

func TestStartRunsBucketsInOrder(t *testing.T) {
	const world, buckets = 4, 9
	rng := rand.New(rand.NewPCG(seedFor(t), 2))
	rings, _ := makeRings(t, world, Config{Generation: 1, SegmentBytes: 64})
	ctx := ctxTimeout(t, 30*time.Second)
	in := make([][][]float32, buckets)
	got := make([][][]float32, buckets)
	for b := range buckets {
		in[b] = randomInputs(rng, world, rng.IntN(500))
		got[b] = cloneAll(in[b])
	}
	res := onAll(rings, func(rank int, r *Ring) error {
		began := time.Now()
		hs := make([]*Handle, buckets)
		for b := range buckets {
			hs[b] = r.Start(ctx, got[b][rank])
			if hs[b].Seq() != uint64(b) {
				t.Errorf("bucket %d has sequence number %d", b, hs[b].Seq())
			}
		}
		for b := buckets - 1; b >= 0; b-- {
			if err := hs[b].Wait(); err != nil {
				return err
			}
		}
		// The operations ran one at a time: their busy times add up to no more
		// than the wall time of them all.
		wall, busy := time.Since(began), time.Duration(0)
		for _, h := range hs {
			busy += h.Busy()
		}
		if busy <= 0 || busy > wall {
			t.Errorf("rank %d: operations busy %v in %v", rank, busy, wall)
		}
		return nil
	})
	for rank, x := range res {
		if x.err != nil {
			t.Fatalf("rank %d: %v", rank, x.err)
		}
	}
	for b := range buckets {
		checkSum(t, in[b], got[b], 64)
	}
}

func TestBroadcast(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 3))
	ctx := ctxTimeout(t, 30*time.Second)
	for _, world := range []int{1, 2, 3, 5, 8} {
		rings, _ := makeRings(t, world, Config{Generation: 2, SegmentBytes: 4 * (1 + rng.IntN(20))})
		for root := range world {
			for _, n := range []int{0, 1, rng.IntN(1000)} {
				in := randomInputs(rng, world, n)
				got := cloneAll(in)
				res := onAll(rings, func(rank int, r *Ring) error { return r.Broadcast(ctx, root, got[rank]) })
				for rank, x := range res {
					if x.err != nil {
						t.Fatalf("world %d root %d: rank %d: %v", world, root, rank, x.err)
					}
					for i := range got[rank] {
						if math.Float32bits(got[rank][i]) != math.Float32bits(in[root][i]) {
							t.Fatalf("world %d root %d n %d: rank %d element %d = %v, want %v", world, root, n, rank, i, got[rank][i], in[root][i])
						}
					}
				}
			}
		}
	}
}

func TestBarrierWaitsForEveryone(t *testing.T) {
	const world = 5
	rings, _ := makeRings(t, world, Config{Generation: 3, ProgressTimeout: 2 * time.Second})
	ctx := ctxTimeout(t, 30*time.Second)
	var lastIn atomic.Int64
	start := time.Now()
	res := onAll(rings, func(rank int, r *Ring) error {
		time.Sleep(time.Duration(rank*30) * time.Millisecond)
		lastIn.Store(max(lastIn.Load(), int64(time.Since(start))))
		err := r.Barrier(ctx)
		if out := time.Since(start); int64(out) < lastIn.Load() {
			t.Errorf("rank %d left the barrier at %v, before the last rank entered", rank, out)
		}
		return err
	})
	for rank, x := range res {
		if x.err != nil {
			t.Fatalf("rank %d: %v", rank, x.err)
		}
	}
}

func TestBF16Compression(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 4))
	ctx := ctxTimeout(t, 30*time.Second)
	for _, world := range []int{2, 3, 7} {
		rings, _ := makeRings(t, world, Config{Generation: 1, SegmentBytes: 4 * (1 + rng.IntN(50)), Compression: CompressBF16})
		for _, n := range []int{0, 1, world + 1, 1000 + rng.IntN(1000)} {
			in := make([][]float32, world)
			for r := range in {
				in[r] = make([]float32, n)
				for i := range in[r] {
					in[r][i] = float32(1 + rng.Float64()) // same sign: bounded relative error
				}
			}
			got := cloneAll(in)
			res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduce(ctx, got[rank]) })
			for rank, x := range res {
				if x.err != nil {
					t.Fatalf("world %d: rank %d: %v", world, rank, x.err)
				}
			}
			for i := range n {
				var exact float64
				for r := range world {
					exact += float64(in[r][i])
				}
				for r := range world {
					if math.Float32bits(got[r][i]) != math.Float32bits(got[0][i]) {
						t.Fatalf("world %d: rank %d element %d = %v, rank 0 has %v", world, r, i, got[r][i], got[0][i])
					}
				}
				if rel := math.Abs(float64(got[0][i])-exact) / exact; rel > float64(world)*(1.0/128) {
					t.Fatalf("world %d element %d: %v vs exact %v (relative error %.3g)", world, i, got[0][i], exact, rel)
				}
				if fromBF16(toBF16(got[0][i])) != got[0][i] {
					t.Fatalf("element %d = %v is not a bf16 value", i, got[0][i])
				}
			}
		}
		// Broadcasts stay exact under compression.
		buf := cloneAll(randomInputs(rng, world, 333))
		want := append([]float32(nil), buf[1]...)
		res := onAll(rings, func(rank int, r *Ring) error { return r.Broadcast(ctx, 1, buf[rank]) })
		for rank, x := range res {
			if x.err != nil {
				t.Fatal(x.err)
			}
			for i := range want {
				if buf[rank][i] != want[i] {
					t.Fatalf("broadcast under compression changed element %d on rank %d", i, rank)
				}
			}
		}
	}
}

func TestSingleMember(t *testing.T) {
	r, err := NewRing(Config{Members: []string{"solo"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := []float32{1, 2, 3}
	ctx := context.Background()
	if err := r.AllReduce(ctx, buf); err != nil || buf[2] != 3 {
		t.Fatalf("AllReduce = %v, buf %v", err, buf)
	}
	if err := r.Broadcast(ctx, 0, buf); err != nil {
		t.Fatal(err)
	}
	if err := r.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Broadcast(ctx, 1, buf); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("broadcast from rank 1 of 1: %v", err)
	}
	if err := r.Barrier(ctx); !errors.Is(err, ErrRingFailed) || !errors.Is(err, ErrBadConfig) {
		t.Fatalf("after a failed operation: %v, want ErrRingFailed wrapping the failure", err)
	}
	r.Close()
	if err := r.Barrier(ctx); err == nil {
		t.Fatal("operation on a closed ring succeeded")
	}
}

func TestConfigValidation(t *testing.T) {
	net := NewInmemNetwork(2, 1)
	bad := []Config{
		{},
		{Members: []string{"a", ""}},
		{Members: []string{"a", "a"}},
		{Members: []string{"a", "b"}, Rank: 2},
		{Members: []string{"a", "b"}, SegmentBytes: 2},
		{Members: []string{"a", "b"}, SegmentBytes: MaxPayload + 1},
		{Members: []string{"a", "b"}, ProgressTimeout: -1},
		{Members: []string{"a", "b"}, Compression: 9},
	}
	for _, c := range bad {
		if _, err := NewRing(c, net.Transport(0)); !errors.Is(err, ErrBadConfig) {
			t.Errorf("NewRing(%+v) err = %v, want ErrBadConfig", c, err)
		}
	}
	if _, err := NewRing(Config{Members: []string{"a", "b"}}, nil); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil transport: %v", err)
	}
}
