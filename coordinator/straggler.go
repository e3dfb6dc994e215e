package coordinator

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// maxRankTimes bounds the rank times one progress report may carry.
const maxRankTimes = 4096

// checkRankTimes validates the rank times of a progress report: finite,
// non-negative seconds, ranks in order.
func checkRankTimes(ranks []*pb.RankTime) *pb.Result {
	if len(ranks) > maxRankTimes {
		return badField("ranks", len(ranks), fmt.Sprintf("must be at most %d", maxRankTimes))
	}
	for i, r := range ranks {
		switch {
		case r.GetRank() != int32(i):
			return badField(fmt.Sprintf("ranks[%d].rank", i), r.GetRank(), fmt.Sprintf("must be %d", i))
		case !finiteNonNegative(r.GetComputeS()):
			return badField(fmt.Sprintf("ranks[%d].compute_s", i), r.GetComputeS(), "must be finite and >= 0")
		case !finiteNonNegative(r.GetWaitS()):
			return badField(fmt.Sprintf("ranks[%d].wait_s", i), r.GetWaitS(), "must be finite and >= 0")
		}
	}
	return nil
}

func finiteNonNegative(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

func cloneRankTimes(ranks []*pb.RankTime) []*pb.RankTime {
	if len(ranks) == 0 {
		return nil
	}
	out := make([]*pb.RankTime, len(ranks))
	for i, r := range ranks {
		out[i] = proto.CloneOf(r)
	}
	return out
}

// Straggler is what the rank times of a progress report say about the slowest
// rank.
type Straggler struct {
	// Slowest is the rank that computes longest per step (the lower rank on a
	// tie); nil when the report has no rank times.
	Slowest *pb.RankTime
	// OthersWaitS is the mean, over the other ranks, of the time each waited
	// in the ring per step: what the slowest rank costs them. Zero for one rank.
	OthersWaitS float64
}

// FindStraggler picks the slowest rank of ranks. It is pure.
func FindStraggler(ranks []*pb.RankTime) Straggler {
	var s Straggler
	for _, r := range ranks {
		if s.Slowest == nil || r.GetComputeS() > s.Slowest.GetComputeS() {
			s.Slowest = r
		}
	}
	if len(ranks) < 2 {
		return s
	}
	sum := 0.0
	for _, r := range ranks {
		if r != s.Slowest {
			sum += r.GetWaitS()
		}
	}
	s.OthersWaitS = sum / float64(len(ranks)-1)
	return s
}
