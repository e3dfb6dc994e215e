package coordinator

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// Peer-lost reports. A worker whose ring fails probes the other members of its
// generation and reports those it cannot reach. A killed worker is reported within
// milliseconds of its death (its connections are refused), long before its lease
// expires; a stopped or partitioned one after the ring's progress timeout. The leader
// gathers the reports of a generation for VerdictWindow, then removes the members
// they point at (verdict) and holds them off: a removed worker's Register is refused
// with ErrHeldOff for HoldOff, doubling with each removal up to MaxHoldOff, so that
// a worker cut off from its peers but not from the coordinator does not rejoin at
// once and break every new ring. None of this is replicated: a new leader starts
// with no reports and no hold-offs, and the removal itself goes through Raft.

// reportBook is the leader's record of the peer-lost reports of one generation.
type reportBook struct {
	gen    uint64
	by     map[string]map[string]string // accused -> accuser -> what the accuser saw
	timer  *time.Timer
	timerC <-chan time.Time
	judged bool // the window closed: later reports of this generation are ignored
}

// holdOff is what the leader remembers of a worker it removed on reports.
type holdOff struct {
	until   time.Time
	strikes int
	last    time.Time
}

// verdict decides whom the reports of one generation remove. members is the plan's
// ordered member list; reports maps each accused member to the members that reported
// it. Members reported that reported no one themselves are all removed: a dead or
// stopped process reports nothing. Otherwise (everyone reported is also reporting,
// as when a link between two live workers is cut) the one with the most accusers is
// removed, the higher rank on a tie, so that a member partitioned from the others
// goes and the others stay. verdict is pure and deterministic.
func verdict(members []string, reports map[string]map[string]string) []string {
	rank := func(id string) int { return slices.Index(members, id) }
	reporting := map[string]bool{}
	for _, accusers := range reports {
		for a := range accusers {
			reporting[a] = true
		}
	}
	var silent, accused []string
	for id, accusers := range reports {
		if rank(id) < 0 || len(accusers) == 0 {
			continue
		}
		accused = append(accused, id)
		if !reporting[id] {
			silent = append(silent, id)
		}
	}
	if len(silent) > 0 {
		slices.SortFunc(silent, func(a, b string) int { return cmp.Compare(rank(a), rank(b)) })
		return silent
	}
	if len(accused) == 0 {
		return nil
	}
	worst := slices.MaxFunc(accused, func(a, b string) int {
		if c := cmp.Compare(len(reports[a]), len(reports[b])); c != 0 {
			return c
		}
		return cmp.Compare(rank(a), rank(b))
	})
	return []string{worst}
}

// nextHoldOff returns how long a worker removed now stays held off, given what the
// leader remembers of it, and updates that memory. Strikes older than ten times the
// maximum are forgotten.
func nextHoldOff(h holdOff, now time.Time, base, maxHold time.Duration) holdOff {
	if h.strikes > 0 && now.Sub(h.last) > 10*maxHold {
		h.strikes = 0
	}
	d := base
	for range h.strikes {
		d = min(2*d, maxHold)
	}
	return holdOff{until: now.Add(d), strikes: h.strikes + 1, last: now}
}

// report records that accuser could not reach accused in generation gen. It is
// called by the gRPC service after checking that both are members of that plan.
func (d *duties) report(t *leaderTerm, gen uint64, accuser, accused, what string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != t {
		return
	}
	if d.book == nil || d.book.gen < gen {
		if d.book != nil && d.book.timer != nil {
			d.book.timer.Stop()
		}
		d.book = &reportBook{gen: gen, by: map[string]map[string]string{}}
	}
	if d.book.gen != gen || d.book.judged {
		return
	}
	if d.book.by[accused] == nil {
		d.book.by[accused] = map[string]string{}
	}
	d.book.by[accused][accuser] = what
	if d.book.timer == nil {
		d.book.timer = time.NewTimer(d.n.cfg.VerdictWindow)
		d.book.timerC = d.book.timer.C
		select {
		case d.kick <- struct{}{}: // let run pick up the new timer
		default:
		}
	}
}

// verdictTimer returns the channel that fires when the current generation's window
// closes (nil when no reports are pending).
func (d *duties) verdictTimer(t *leaderTerm) <-chan time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != t || d.book == nil {
		return nil
	}
	return d.book.timerC
}

// takeReports removes and returns the pending reports once their window has closed.
func (d *duties) takeReports(t *leaderTerm) *reportBook {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != t || d.book == nil {
		return nil
	}
	b := d.book
	d.book = &reportBook{gen: b.gen, judged: true}
	return b
}

// heldOff returns how long worker id is still held off (0 when it may register).
func (d *duties) heldOff(id string) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h, ok := d.holds[id]; ok {
		if left := time.Until(h.until); left > 0 {
			return left
		}
	}
	return 0
}

// judge removes the members the closed window's reports point at and holds them off.
func (d *duties) judge(t *leaderTerm, b *reportBook) {
	n := d.n
	var plan *pb.Plan
	var workers []*pb.Worker
	n.fsm.read(func(st *pb.CoordinatorState) {
		plan = st.GetPlan()
		workers = cloneWorkers(st.GetWorkers())
	})
	if plan.GetGeneration() != b.gen {
		return // the plan moved on (a lease expired, someone left): the reports are stale
	}
	for _, id := range verdict(plan.GetMembers(), b.by) {
		var joinedAt uint64
		for _, w := range workers {
			if w.GetId() == id {
				joinedAt = w.GetJoinedAt()
			}
		}
		if joinedAt == 0 {
			continue
		}
		accusers := slices.Sorted(maps.Keys(b.by[id]))
		var seen []string
		for _, a := range accusers {
			seen = append(seen, fmt.Sprintf("%s: %s", a, b.by[id][a]))
		}
		reason := "reported lost by " + strings.Join(accusers, ", ")
		d.mu.Lock()
		if d.term == t {
			d.holds[id] = nextHoldOff(d.holds[id], time.Now(), n.cfg.HoldOff, n.cfg.MaxHoldOff)
		}
		hold := time.Until(d.holds[id].until).Round(time.Millisecond)
		d.mu.Unlock()
		n.log.Warn("removing a worker its peers cannot reach", "worker", id, "generation", b.gen,
			"reported_by", accusers, "seen", seen, "held_off_for", hold)
		_, err := n.apply(t.ctx, &pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{
			WorkerId: id, JoinedAt: joinedAt, Reason: reason,
		}}})
		if err != nil {
			n.log.Warn("proposing removal failed", "worker", id, "err", err)
			continue
		}
		d.forget(t, id, joinedAt)
	}
}

// checkReport validates a peer-lost report against the current plan.
func checkReport(st *pb.CoordinatorState, req *pb.ReportPeerLostRequest) error {
	plan := st.GetPlan()
	switch {
	case req.GetGeneration() < plan.GetGeneration():
		return fmt.Errorf("report peer lost: %w: generation %d, current %d", ErrStaleGeneration, req.GetGeneration(), plan.GetGeneration())
	case req.GetGeneration() > plan.GetGeneration():
		return fmt.Errorf("report peer lost: %w: generation %d is newer than the current %d", ErrBadCommand, req.GetGeneration(), plan.GetGeneration())
	case !slices.Contains(plan.GetMembers(), req.GetWorkerId()):
		return fmt.Errorf("report peer lost: %w: %q in generation %d", ErrNotMember, req.GetWorkerId(), plan.GetGeneration())
	case !slices.Contains(plan.GetMembers(), req.GetPeerId()):
		return fmt.Errorf("report peer lost: %w: peer_id %q is not a member of generation %d", ErrBadCommand, req.GetPeerId(), plan.GetGeneration())
	case req.GetPeerId() == req.GetWorkerId():
		return fmt.Errorf("report peer lost: %w: a worker cannot report itself", ErrBadCommand)
	}
	return nil
}

// ReportPeerLost is the gRPC handler; see coordinator.proto.
func (s *service) ReportPeerLost(ctx context.Context, req *pb.ReportPeerLostRequest) (*pb.ReportPeerLostResponse, error) {
	t, err := s.n.duties.awaitReady(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	s.n.fsm.read(func(st *pb.CoordinatorState) { err = checkReport(st, req) })
	if err != nil {
		return nil, toStatus(err)
	}
	what := req.GetError()
	if len(what) > 300 {
		what = what[:300]
	}
	s.n.log.Info("peer reported lost", "worker", req.GetWorkerId(), "peer", req.GetPeerId(),
		"generation", req.GetGeneration(), "seen", what)
	s.n.duties.report(t, req.GetGeneration(), req.GetWorkerId(), req.GetPeerId(), what)
	return &pb.ReportPeerLostResponse{}, nil
}
