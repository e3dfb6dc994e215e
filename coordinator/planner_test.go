package coordinator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

func workersN(ids ...int) []*pb.Worker {
	var out []*pb.Worker
	for _, i := range ids {
		out = append(out, &pb.Worker{Id: fmt.Sprintf("w%02d", i), Address: fmt.Sprintf("h%d:1", i), JoinedAt: uint64(10 + i)})
	}
	return out
}

func TestPlannerWaitingAndStandby(t *testing.T) {
	job := &pb.JobSpec{Streams: 4, MinWorkers: 2, MaxWorkers: 3, Steps: 10}
	if p := NextPlan(nil, workersN(0, 1), nil); p.GetState() != pb.PlanState_PLAN_STATE_WAITING || p.GetReason() != "no job submitted" {
		t.Fatalf("no job: %v", p)
	}
	p := NextPlan(job, workersN(0), nil)
	if p.GetState() != pb.PlanState_PLAN_STATE_WAITING || p.GetReason() != "waiting for workers: 1 registered, min_workers 2" ||
		len(p.GetMembers()) != 0 || !slices.Equal(p.GetStandby(), []string{"w00"}) {
		t.Fatalf("below min: %v", p)
	}
	p = NextPlan(job, workersN(4, 3, 2, 1, 0), nil)
	if !slices.Equal(p.GetMembers(), []string{"w00", "w01", "w02"}) || !slices.Equal(p.GetStandby(), []string{"w03", "w04"}) {
		t.Fatalf("above max: members %v standby %v", p.GetMembers(), p.GetStandby())
	}
	// max_workers 0 means one per stream at most.
	job.MaxWorkers = 0
	p = NextPlan(job, workersN(0, 1, 2, 3, 4, 5), nil)
	if len(p.GetMembers()) != 4 || len(p.GetStandby()) != 2 {
		t.Fatalf("max 0: members %v standby %v", p.GetMembers(), p.GetStandby())
	}
	// A member that stays keeps its place even when an earlier joiner returns.
	job.MaxWorkers = 2
	prev := NextPlan(job, workersN(1, 2), nil)
	p = NextPlan(job, workersN(0, 1, 2), prev)
	if !slices.Equal(p.GetMembers(), []string{"w01", "w02"}) || !slices.Equal(p.GetStandby(), []string{"w00"}) {
		t.Fatalf("stability: members %v standby %v", p.GetMembers(), p.GetStandby())
	}
}

func TestPlannerMinimalMoves(t *testing.T) {
	job := &pb.JobSpec{Streams: 12, MinWorkers: 1, Steps: 10}
	p3 := NextPlan(job, workersN(0, 1, 2), nil)
	// One worker joins: exactly its share (3 streams) moves.
	p4 := NextPlan(job, workersN(0, 1, 2, 3), p3)
	if moved := movedStreams(p3, p4); moved != 3 {
		t.Fatalf("join moved %d streams, want 3: %v -> %v", moved, p3.GetStreamOwner(), p4.GetStreamOwner())
	}
	// One worker leaves: only its streams move.
	p3b := NextPlan(job, workersN(0, 2, 3), p4)
	if moved := movedStreams(p4, p3b); moved != 3 {
		t.Fatalf("leave moved %d streams, want 3", moved)
	}
	// No change: the same plan.
	if again := NextPlan(job, workersN(0, 2, 3), p3b); !samePlan(again, p3b) {
		t.Fatalf("unchanged membership changed the plan")
	}
}

// movedStreams counts the streams whose owner changed.
func movedStreams(a, b *pb.Plan) int {
	n := 0
	for m := range b.GetStreamOwner() {
		if m >= len(a.GetStreamOwner()) || a.GetStreamOwner()[m] != b.GetStreamOwner()[m] {
			n++
		}
	}
	return n
}

// TestPlannerProperties checks over random jobs and membership changes that plans are
// balanced, complete and valid, independent of input order, and move the fewest
// streams an even split allows.
func TestPlannerProperties(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 99))
		streams := 1 + rng.IntN(16)
		job := &pb.JobSpec{Streams: int32(streams), MinWorkers: int32(rng.IntN(3)), MaxWorkers: int32(rng.IntN(streams + 3)), Steps: 1}
		var prev *pb.Plan
		present := map[int]bool{}
		for round := range 12 {
			for range 1 + rng.IntN(3) {
				present[rng.IntN(12)] = rng.IntN(3) != 0
			}
			var ids []int
			for id, in := range present {
				if in {
					ids = append(ids, id)
				}
			}
			slices.Sort(ids)
			ws := workersN(ids...)
			p := NextPlan(job, ws, prev)
			ctx := fmt.Sprintf("seed %d round %d (streams %d, min %d, max %d, %d workers)", seed, round, streams, job.MinWorkers, job.MaxWorkers, len(ws))

			// Input order does not matter.
			shuffled := slices.Clone(ws)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if q := NextPlan(job, shuffled, prev); !proto.Equal(p, q) {
				t.Fatalf("%s: plan depends on input order", ctx)
			}
			// Every worker is exactly one of member or standby.
			all := append(slices.Clone(p.GetMembers()), p.GetStandby()...)
			slices.Sort(all)
			var want []string
			for _, w := range ws {
				want = append(want, w.GetId())
			}
			if !slices.Equal(all, want) {
				t.Fatalf("%s: members+standby %v, want %v", ctx, all, want)
			}
			maxW := int(job.MaxWorkers)
			if maxW == 0 || maxW > streams {
				maxW = streams
			}
			if p.GetState() == pb.PlanState_PLAN_STATE_WAITING {
				if len(p.GetMembers()) != 0 || min(len(ws), maxW) >= max(int(job.MinWorkers), 1) {
					t.Fatalf("%s: waiting with %d workers: %v", ctx, len(ws), p)
				}
				prev = p
				continue
			}
			if len(p.GetMembers()) != min(len(ws), maxW) {
				t.Fatalf("%s: %d members, want %d", ctx, len(p.GetMembers()), min(len(ws), maxW))
			}
			// Balanced and complete.
			counts := map[string]int{}
			for _, o := range p.GetStreamOwner() {
				counts[o]++
			}
			lo, hi := streams, 0
			for _, id := range p.GetMembers() {
				lo, hi = min(lo, counts[id]), max(hi, counts[id])
			}
			if len(p.GetStreamOwner()) != streams || hi-lo > 1 || lo == 0 {
				t.Fatalf("%s: unbalanced or incomplete %v", ctx, p.GetStreamOwner())
			}
			if err := checkState(&pb.CoordinatorState{Version: StateVersion, Plan: p}); err != nil {
				t.Fatalf("%s: %v", ctx, err)
			}
			// Stable ranks: surviving members keep their relative order.
			if prev.GetState() == pb.PlanState_PLAN_STATE_ACTIVE {
				var kept []string
				for _, id := range prev.GetMembers() {
					if slices.Contains(p.GetMembers(), id) {
						kept = append(kept, id)
					}
				}
				if !slices.Equal(kept, p.GetMembers()[:len(kept)]) {
					t.Fatalf("%s: survivors %v reordered in %v", ctx, kept, p.GetMembers())
				}
				checkMinimalMoves(t, ctx, prev, p, streams)
			}
			prev = p
		}
	}
}

// checkMinimalMoves verifies that the streams kept by surviving members are as many
// as any even split could keep.
func checkMinimalMoves(t *testing.T, ctx string, prev, next *pb.Plan, streams int) {
	t.Helper()
	held := map[string]int{}
	for _, o := range prev.GetStreamOwner() {
		if slices.Contains(next.GetMembers(), o) {
			held[o]++
		}
	}
	var hs []int
	for _, id := range next.GetMembers() {
		hs = append(hs, held[id])
	}
	slices.SortFunc(hs, func(a, b int) int { return b - a })
	w := len(next.GetMembers())
	best := 0
	for i, h := range hs {
		share := streams / w
		if i < streams%w {
			share++
		}
		best += min(h, share)
	}
	kept := 0
	for m, o := range next.GetStreamOwner() {
		if m < len(prev.GetStreamOwner()) && prev.GetStreamOwner()[m] == o {
			kept++
		}
	}
	if kept != best {
		t.Fatalf("%s: kept %d streams in place, an even split can keep %d: %v -> %v", ctx, kept, best, prev.GetStreamOwner(), next.GetStreamOwner())
	}
}

func TestStreamsOfAndRankOf(t *testing.T) {
	p := NextPlan(&pb.JobSpec{Streams: 5, Steps: 1}, workersN(0, 1), nil)
	if got := StreamsOf(p, "w00"); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("StreamsOf w00 = %v", got)
	}
	if got := StreamsOf(p, "w01"); !slices.Equal(got, []int{3, 4}) {
		t.Fatalf("StreamsOf w01 = %v", got)
	}
	if RankOf(p, "w01") != 1 || RankOf(p, "zz") != -1 {
		t.Fatalf("RankOf")
	}
}

// zoned gives workers N(ids) the zones zones[i] (in order).
func zoned(ids []int, zones string) []*pb.Worker {
	ws := workersN(ids...)
	for i, w := range ws {
		w.Zone = string(zones[i])
	}
	return ws
}

func TestPlannerZones(t *testing.T) {
	job := &pb.JobSpec{Streams: 8, MinWorkers: 1, Steps: 10}
	for _, tc := range []struct {
		name      string
		prev      []*pb.Worker // workers of the previous plan (nil: none)
		workers   []*pb.Worker
		want      []string
		crossings int
	}{
		{"one zone keeps join order", nil, zoned([]int{0, 1, 2, 3}, "aaaa"), []string{"w00", "w01", "w02", "w03"}, 0},
		{"unlabelled keeps join order", nil, workersN(3, 1, 2, 0), []string{"w00", "w01", "w02", "w03"}, 0},
		{"interleaved joins are grouped", nil, zoned([]int{0, 1, 2, 3, 4, 5, 6, 7}, "abababab"),
			[]string{"w00", "w02", "w04", "w06", "w01", "w03", "w05", "w07"}, 2},
		{"three zones, zones in order of first member", nil, zoned([]int{0, 1, 2, 3, 4, 5}, "cabcab"),
			[]string{"w00", "w03", "w01", "w04", "w02", "w05"}, 3},
		{"unlabelled is a zone of its own", nil, zoned([]int{0, 1, 2, 3}, "a a "),
			[]string{"w00", "w02", "w01", "w03"}, 2},
		{"a newcomer joins the end of its zone, survivors keep their order",
			zoned([]int{0, 1, 2, 3}, "abab"), zoned([]int{0, 1, 3, 4}, "abba"),
			[]string{"w00", "w04", "w01", "w03"}, 2},
		{"a worker that changes zone moves to its new zone",
			zoned([]int{0, 1, 2, 3}, "aabb"), zoned([]int{0, 1, 2, 3}, "abbb"),
			[]string{"w00", "w01", "w02", "w03"}, 2},
		{"a worker that changes zone moves to its new zone (middle)",
			zoned([]int{0, 1, 2, 3}, "aabb"), zoned([]int{0, 1, 2, 3}, "babb"),
			[]string{"w00", "w02", "w03", "w01"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prev *pb.Plan
			if tc.prev != nil {
				prev = NextPlan(job, tc.prev, nil)
			}
			p := NextPlan(job, tc.workers, prev)
			if !slices.Equal(p.GetMembers(), tc.want) {
				t.Fatalf("members %v, want %v", p.GetMembers(), tc.want)
			}
			if got := ZoneCrossings(p); got != tc.crossings {
				t.Fatalf("%d zone crossings, want %d", got, tc.crossings)
			}
			if prev != nil {
				checkMinimalMoves(t, tc.name, prev, p, int(job.GetStreams()))
			}
		})
	}
}

// TestPlannerZonesProperty: over random joins, leaves and zones, every plan
// crosses zone boundaries exactly once per zone (none with one zone), survivors
// keep their relative order while nobody changes zone, and streams move minimally.
func TestPlannerZonesProperty(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		streams := 1 + rng.IntN(12)
		job := &pb.JobSpec{Streams: int32(streams), MinWorkers: 1, MaxWorkers: int32(rng.IntN(streams + 1)), Steps: 10}
		zoneOf := map[int]string{}
		var prev *pb.Plan
		for step := range 8 {
			var ws []*pb.Worker
			for id := range 10 {
				if rng.IntN(3) == 0 {
					continue
				}
				if _, ok := zoneOf[id]; !ok {
					zoneOf[id] = string("abc"[rng.IntN(3)])
				}
				w := workersN(id)[0]
				w.Zone = zoneOf[id]
				ws = append(ws, w)
			}
			p := NextPlan(job, ws, prev)
			ctx := fmt.Sprintf("seed %d step %d", seed, step)
			if p.GetState() != pb.PlanState_PLAN_STATE_ACTIVE {
				prev = p
				continue
			}
			zones := map[string]bool{}
			for _, w := range p.GetWorkers() {
				zones[w.GetZone()] = true
			}
			want := len(zones)
			if want == 1 {
				want = 0
			}
			if got := ZoneCrossings(p); got != want {
				t.Fatalf("%s: %d crossings for %d zones: %v", ctx, got, len(zones), p.GetWorkers())
			}
			if prev.GetState() == pb.PlanState_PLAN_STATE_ACTIVE {
				var kept []string
				for _, id := range prev.GetMembers() {
					if slices.Contains(p.GetMembers(), id) {
						kept = append(kept, id)
					}
				}
				var order []string
				for _, id := range p.GetMembers() {
					if slices.Contains(kept, id) {
						order = append(order, id)
					}
				}
				if !slices.Equal(kept, order) {
					t.Fatalf("%s: survivors %v reordered to %v", ctx, kept, order)
				}
				checkMinimalMoves(t, ctx, prev, p, streams)
			}
			prev = p
		}
	}
}
