package coordinator

import (
	"cmp"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// NextPlan computes the plan that should follow prev, given the job and the registered
// workers. It is a pure function: the same inputs give the same plan, and it neither
// reads nor modifies anything else (the inputs are not changed; the result shares no
// memory with them). The caller (the state machine) decides whether the result is a
// new generation (see samePlan) and fills in generation, start_step and
// membership_epoch.
//
// Rules:
//   - No job: a WAITING plan.
//   - Members are chosen stably: the members of prev that are still registered keep
//     their order (and so their ranks' relative order); the other workers follow in the
//     order they joined (joined_at, then id). At most max_workers (0 means streams,
//     and never more than streams, since a member without a stream has nothing to
//     compute) are members; the rest are standby.
//   - The members are then grouped by zone (the workers' topology label; "" is a
//     zone like any other), so that the ring crosses each zone boundary as few
//     times as possible: once into and once out of every zone, k crossings for k
//     zones. The zones follow in the order of their first member above, and within
//     a zone the members keep the order above. So a plan this function made, whose
//     zones are already contiguous, keeps its survivors' relative order, and a
//     newcomer takes its place at the end of its zone rather than at the end of
//     the ring; only a worker that changes zone moves its survivors.
//   - Fewer members than min_workers: a WAITING plan with a reason naming the counts;
//     every registered worker is listed as standby.
//   - Streams are spread evenly (counts differ by at most one) and moved as little as
//     possible: the members that held the most streams in prev get the larger share,
//     each member keeps as many of its previous streams as its share allows (its
//     lowest-numbered ones), and only the rest (streams of departed members and the
//     surplus of members above their share) move, lowest first, to members below
//     their share, in rank order.
func NextPlan(job *pb.JobSpec, workers []*pb.Worker, prev *pb.Plan) *pb.Plan {
	byJoin := byJoinOrder(workers)
	if job == nil {
		return waitingPlan("no job submitted", byJoin)
	}
	streams := int(job.GetStreams())
	maxW := int(job.GetMaxWorkers())
	if maxW <= 0 || maxW > streams {
		maxW = streams
	}
	minW := max(int(job.GetMinWorkers()), 1)

	registered := make(map[string]*pb.Worker, len(byJoin))
	for _, w := range byJoin {
		registered[w.GetId()] = w
	}
	var members []*pb.Worker
	chosen := make(map[string]bool, len(byJoin))
	if prev.GetState() == pb.PlanState_PLAN_STATE_ACTIVE {
		for _, id := range prev.GetMembers() {
			if w, ok := registered[id]; ok && !chosen[id] && len(members) < maxW {
				members = append(members, w)
				chosen[id] = true
			}
		}
	}
	for _, w := range byJoin {
		if !chosen[w.GetId()] && len(members) < maxW {
			members = append(members, w)
			chosen[w.GetId()] = true
		}
	}
	members = groupByZone(members)
	if len(members) < minW {
		return waitingPlan(fmt.Sprintf("waiting for workers: %d registered, min_workers %d", len(byJoin), minW), byJoin)
	}

	plan := &pb.Plan{State: pb.PlanState_PLAN_STATE_ACTIVE}
	for _, w := range members {
		plan.Members = append(plan.Members, w.GetId())
		plan.Workers = append(plan.Workers, proto.CloneOf(w))
	}
	for _, w := range byJoin {
		if !chosen[w.GetId()] {
			plan.Standby = append(plan.Standby, w.GetId())
		}
	}
	var prevOwner []string
	if prev.GetState() == pb.PlanState_PLAN_STATE_ACTIVE && len(prev.GetStreamOwner()) == streams {
		prevOwner = prev.GetStreamOwner()
	}
	plan.StreamOwner = assignStreams(streams, plan.Members, prevOwner)
	return plan
}

// groupByZone returns members reordered so that each zone's members are adjacent:
// zones in the order of their first member, members within a zone in their order.
// It is stable, and the identity when every member has the same zone.
func groupByZone(members []*pb.Worker) []*pb.Worker {
	first := make(map[string]int, 4)
	for i, w := range members {
		if _, ok := first[w.GetZone()]; !ok {
			first[w.GetZone()] = i
		}
	}
	out := slices.Clone(members)
	slices.SortStableFunc(out, func(a, b *pb.Worker) int { return cmp.Compare(first[a.GetZone()], first[b.GetZone()]) })
	return out
}

// ZoneCrossings counts the links of plan's ring (members in rank order, the last
// linked to the first) whose two ends are in different zones.
func ZoneCrossings(plan *pb.Plan) int {
	ws := plan.GetWorkers()
	if len(ws) < 2 {
		return 0
	}
	n := 0
	for i, w := range ws {
		if w.GetZone() != ws[(i+1)%len(ws)].GetZone() {
			n++
		}
	}
	return n
}

// assignStreams spreads streams over members (by rank), keeping prevOwner's
// assignment where the even split allows. prevOwner is nil or has one entry per stream.
func assignStreams(streams int, members []string, prevOwner []string) []string {
	w := len(members)
	rank := make(map[string]int, w)
	for r, id := range members {
		rank[id] = r
	}
	held := make([][]int, w) // streams each member held, ascending
	for m, id := range prevOwner {
		if r, ok := rank[id]; ok {
			held[r] = append(held[r], m)
		}
	}
	// The `extra` members holding the most streams (ties: lower rank) get one more.
	base, extra := streams/w, streams%w
	order := make([]int, w)
	for r := range order {
		order[r] = r
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(held[b]), len(held[a])) })
	target := make([]int, w)
	for i, r := range order {
		target[r] = base
		if i < extra {
			target[r]++
		}
	}
	owner := make([]string, streams)
	assigned := make([]bool, streams)
	for r := range w {
		for _, m := range held[r][:min(len(held[r]), target[r])] {
			owner[m] = members[r]
			assigned[m] = true
		}
		target[r] -= min(len(held[r]), target[r])
	}
	r := 0
	for m := range streams {
		if assigned[m] {
			continue
		}
		for target[r] == 0 {
			r++
		}
		owner[m] = members[r]
		target[r]--
	}
	return owner
}

// byJoinOrder returns a copy of workers (the slice, not the records) sorted by
// joined_at, then id.
func byJoinOrder(workers []*pb.Worker) []*pb.Worker {
	byJoin := slices.Clone(workers)
	slices.SortFunc(byJoin, func(a, b *pb.Worker) int {
		return cmp.Or(cmp.Compare(a.GetJoinedAt(), b.GetJoinedAt()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return byJoin
}

func waitingPlan(reason string, byJoin []*pb.Worker) *pb.Plan {
	plan := &pb.Plan{State: pb.PlanState_PLAN_STATE_WAITING, Reason: reason}
	for _, w := range byJoin {
		plan.Standby = append(plan.Standby, w.GetId())
	}
	return plan
}

// samePlan reports whether two plans assign the same work to the same workers, so
// that no new generation is needed: generation, start_step and membership_epoch are
// ignored.
func samePlan(a, b *pb.Plan) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.GetState() != b.GetState() || a.GetReason() != b.GetReason() || a.GetJobVersion() != b.GetJobVersion() ||
		!slices.Equal(a.GetMembers(), b.GetMembers()) ||
		!slices.Equal(a.GetStreamOwner(), b.GetStreamOwner()) ||
		!slices.Equal(a.GetStandby(), b.GetStandby()) ||
		len(a.GetWorkers()) != len(b.GetWorkers()) {
		return false
	}
	for i := range a.GetWorkers() {
		if !proto.Equal(a.GetWorkers()[i], b.GetWorkers()[i]) {
			return false
		}
	}
	return true
}

// StreamsOf returns the streams plan assigns to worker id, ascending (nil when it owns
// none). The result is a new slice owned by the caller.
func StreamsOf(plan *pb.Plan, id string) []int {
	var out []int
	for m, owner := range plan.GetStreamOwner() {
		if owner == id {
			out = append(out, m)
		}
	}
	return out
}

// RankOf returns worker id's rank in plan, or -1 when it is not a member.
func RankOf(plan *pb.Plan, id string) int {
	return slices.Index(plan.GetMembers(), id)
}
