package coordinator

import (
	"math"
	"strings"
	"testing"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

func rt(rank int32, id string, compute, wait float64) *pb.RankTime {
	return &pb.RankTime{Rank: rank, WorkerId: id, ComputeS: compute, WaitS: wait}
}

func TestFindStraggler(t *testing.T) {
	for _, c := range []struct {
		name    string
		ranks   []*pb.RankTime
		slowest string
		wait    float64
	}{
		{"none", nil, "", 0},
		{"one rank", []*pb.RankTime{rt(0, "a", 0.01, 0)}, "a", 0},
		{"slow middle", []*pb.RankTime{rt(0, "a", 0.01, 0.04), rt(1, "b", 0.05, 0), rt(2, "c", 0.02, 0.02)}, "b", 0.03},
		{"tie: the lower rank", []*pb.RankTime{rt(0, "a", 0.02, 0), rt(1, "b", 0.02, 0)}, "a", 0},
	} {
		s := FindStraggler(c.ranks)
		if s.Slowest.GetWorkerId() != c.slowest || math.Abs(s.OthersWaitS-c.wait) > 1e-12 {
			t.Errorf("%s: slowest %q waiting %v, want %q and %v", c.name, s.Slowest.GetWorkerId(), s.OthersWaitS, c.slowest, c.wait)
		}
	}
}

func TestCheckRankTimes(t *testing.T) {
	for _, c := range []struct {
		name  string
		ranks []*pb.RankTime
		field string // "" when valid
	}{
		{"none", nil, ""},
		{"valid", []*pb.RankTime{rt(0, "a", 0.1, 0), rt(1, "b", 0, 0.2)}, ""},
		{"out of order", []*pb.RankTime{rt(1, "a", 0.1, 0)}, "ranks[0].rank"},
		{"negative compute", []*pb.RankTime{rt(0, "a", -1, 0)}, "ranks[0].compute_s"},
		{"NaN wait", []*pb.RankTime{rt(0, "a", 0, math.NaN())}, "ranks[0].wait_s"},
		{"infinite wait", []*pb.RankTime{rt(0, "a", 0, math.Inf(1))}, "ranks[0].wait_s"},
	} {
		r := checkRankTimes(c.ranks)
		switch {
		case c.field == "" && r != nil:
			t.Errorf("%s: refused: %v", c.name, r)
		case c.field != "" && (r == nil || !strings.Contains(r.GetMessage(), c.field)):
			t.Errorf("%s: %v, want an error naming %s", c.name, r, c.field)
		}
	}
}
