package allreduce

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// testLogger sends slog records to t.Log, so they show only when a test fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// makeRings builds world in-memory rings from cfg and closes them when the
// test ends.
func makeRings(t testing.TB, world int, cfg Config) ([]*Ring, *InmemNetwork) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	rings, net, err := NewInmemRings(cfg, world, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range rings {
			r.Close()
		}
	})
	return rings, net
}

type rankResult struct {
	err  error
	took time.Duration
}

// onAll runs f for every rank concurrently and returns each rank's error and
// how long it took.
func onAll(rings []*Ring, f func(rank int, r *Ring) error) []rankResult {
	res := make([]rankResult, len(rings))
	var wg sync.WaitGroup
	for i, r := range rings {
		wg.Go(func() {
			began := time.Now()
			res[i].err = f(i, r)
			res[i].took = time.Since(began)
		})
	}
	wg.Wait()
	return res
}

func randomInputs(rng *rand.Rand, world, n int) [][]float32 {
	in := make([][]float32, world)
	for r := range in {
		in[r] = make([]float32, n)
		for i := range in[r] {
			in[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3)))
		}
	}
	return in
}

// ringOrderSum is the all-reduce result the schedule defines for segments of
// segElems: each element of chunk c summed from rank c's value onwards round
// the ring, in float32.
func ringOrderSum(in [][]float32, segElems int) []float32 {
	world, n := len(in), len(in[0])
	s := newSchedule(world, 0, n, segElems)
	out := make([]float32, n)
	for i := range n {
		c := s.chunkOf(i)
		acc := in[c][i]
		for k := 1; k < world; k++ {
			acc += in[(c+k)%world][i]
		}
		out[i] = acc
	}
	return out
}

// checkSum checks that every rank's buffer has exactly the bits of the
// ring-order sum for segments of segBytes (0: the default) and is close to
// the float64 sum.
func checkSum(t testing.TB, in, got [][]float32, segBytes int) {
	t.Helper()
	if segBytes == 0 {
		segBytes = DefaultSegmentBytes
	}
	want := ringOrderSum(in, segBytes/4)
	for r := range got {
		for i := range want {
			if math.Float32bits(got[r][i]) != math.Float32bits(want[i]) {
				t.Fatalf("world %d n %d: rank %d element %d is %v, want %v", len(in), len(want), r, i, got[r][i], want[i])
			}
		}
	}
	for i := range want {
		var exact, mag float64
		for r := range in {
			exact += float64(in[r][i])
			mag += math.Abs(float64(in[r][i]))
		}
		if d := math.Abs(float64(want[i]) - exact); d > 1e-5*mag+1e-30 {
			t.Fatalf("world %d: element %d is %v, float64 sum %v", len(in), i, want[i], exact)
		}
	}
}

func cloneAll(in [][]float32) [][]float32 {
	out := make([][]float32, len(in))
	for i := range in {
		out[i] = append([]float32(nil), in[i]...)
	}
	return out
}

func seedFor(t testing.TB) uint64 {
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d", s)
	return s
}

// requireAll checks that every rank failed with one of the wanted errors
// within limit.
func requireAll(t testing.TB, res []rankResult, limit time.Duration, want ...error) {
	t.Helper()
	requireFailed(t, res, limit, false, want...)
}

// requireFailed checks that every rank failed with one of the wanted errors
// within limit, or, if done is set, finished (the caller checks its result).
func requireFailed(t testing.TB, res []rankResult, limit time.Duration, done bool, want ...error) {
	t.Helper()
	for r, x := range res {
		if done && x.err == nil {
			continue
		}
		ok := false
		for _, w := range want {
			ok = ok || errors.Is(x.err, w)
		}
		if !ok {
			t.Errorf("rank %d: err = %v, want one of %v", r, x.err, want)
		}
		if x.took > limit {
			t.Errorf("rank %d took %v to fail, limit %v", r, x.took, limit)
		}
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
