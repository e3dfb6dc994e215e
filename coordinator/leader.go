package coordinator

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// duties is what only the leader does: it keeps the workers' leases in memory,
// proposes the removal of a worker whose lease expired, and turns membership changes
// into new plans once the settle window closes. A term starts when Raft reports
// leadership and ends when it reports its loss (or the node closes); nothing of a
// term survives it, so a new leader starts from the replicated state alone.
type duties struct {
	n *Node

	mu     sync.Mutex
	term   *leaderTerm // nil when not leading
	leases map[string]lease
	book   *reportBook        // peer-lost reports of the newest generation (verdict.go)
	holds  map[string]holdOff // workers removed on reports
	kick   chan struct{}      // wakes run when a report window opens
}

type leaderTerm struct {
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed once the state machine is caught up and leases granted
}

type lease struct {
	deadline time.Time
	joinedAt uint64 // the incarnation the lease belongs to
}

func newDuties(n *Node) *duties {
	return &duties{n: n, holds: map[string]holdOff{}, kick: make(chan struct{}, 1)}
}

func (d *duties) startTerm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != nil {
		return
	}
	ctx, cancel := context.WithCancel(d.n.ctx)
	t := &leaderTerm{ctx: ctx, cancel: cancel, ready: make(chan struct{})}
	d.term = t
	d.leases = map[string]lease{}
	d.n.wg.Add(1)
	go func() {
		defer d.n.wg.Done()
		d.run(t)
	}()
}

func (d *duties) stopTerm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != nil {
		d.term.cancel()
		d.term = nil
		d.leases = nil
		if d.book != nil && d.book.timer != nil {
			d.book.timer.Stop()
		}
		d.book = nil
	}
}

// currentTerm returns the running term, or nil when this replica does not lead.
func (d *duties) currentTerm() *leaderTerm {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.term
}

// awaitReady returns the current term once it is ready, or ErrNotLeader (with a
// hint) when this replica does not lead, or ctx's error.
func (d *duties) awaitReady(ctx context.Context) (*leaderTerm, error) {
	t := d.currentTerm()
	if t == nil {
		return nil, d.n.notLeader()
	}
	select {
	case <-t.ready:
		return t, nil
	case <-t.ctx.Done():
		return nil, d.n.notLeader()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// renew extends worker id's lease (incarnation joinedAt) by the lease duration.
func (d *duties) renew(t *leaderTerm, id string, joinedAt uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term == t && d.leases != nil {
		d.leases[id] = lease{deadline: time.Now().Add(d.n.cfg.Lease), joinedAt: joinedAt}
	}
}

// syncLeases makes the lease table match the registered workers: a worker without a
// lease (or with one for an earlier incarnation) gets a fresh one, a lease of a
// worker no longer registered is dropped.
func (d *duties) syncLeases(t *leaderTerm, workers []*pb.Worker) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != t {
		return
	}
	known := make(map[string]bool, len(workers))
	for _, w := range workers {
		known[w.GetId()] = true
		if l, ok := d.leases[w.GetId()]; !ok || l.joinedAt != w.GetJoinedAt() {
			d.leases[w.GetId()] = lease{deadline: now.Add(d.n.cfg.Lease), joinedAt: w.GetJoinedAt()}
		}
	}
	for id := range d.leases {
		if !known[id] {
			delete(d.leases, id)
		}
	}
}

type expiredLease struct {
	id       string
	joinedAt uint64
}

// expired returns the workers whose lease has run out, sorted by id.
func (d *duties) expired(t *leaderTerm) []expiredLease {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != t {
		return nil
	}
	var out []expiredLease
	for id, l := range d.leases {
		if now.After(l.deadline) {
			out = append(out, expiredLease{id, l.joinedAt})
		}
	}
	slices.SortFunc(out, func(a, b expiredLease) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out
}

func (d *duties) forget(t *leaderTerm, id string, joinedAt uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term == t && d.leases[id].joinedAt == joinedAt {
		delete(d.leases, id)
	}
}

// run is the body of one leader term.
func (d *duties) run(t *leaderTerm) {
	n := d.n
	log := n.log.With("term", n.raft.CurrentTerm())
	// Catch the state machine up with everything committed by earlier leaders, so the
	// lease table below covers every registered worker.
	if err := n.barrier(t.ctx); err != nil {
		log.Warn("leader barrier failed", "err", err)
		return
	}
	var self *pb.Replica
	n.fsm.read(func(st *pb.CoordinatorState) {
		if i, found := (&Machine{st: st}).findReplica(n.cfg.ID); found {
			self = proto.CloneOf(st.Replicas[i])
		}
	})
	if self.GetGrpcAddr() != n.grpcAdvertise {
		_, err := n.apply(t.ctx, &pb.Command{Op: &pb.Command_SetReplica{SetReplica: &pb.SetReplicaOp{Id: n.cfg.ID, GrpcAddr: n.grpcAdvertise}}})
		if err != nil {
			log.Warn("recording this replica's gRPC address failed", "err", err)
		}
	}
	// Every known worker gets a fresh lease: the old leader's table died with it.
	var workers []*pb.Worker
	n.fsm.read(func(st *pb.CoordinatorState) { workers = cloneWorkers(st.GetWorkers()) })
	d.syncLeases(t, workers)
	close(t.ready)

	tick := time.NewTicker(max(n.cfg.Lease/8, 5*time.Millisecond))
	defer tick.Stop()
	var settle *time.Timer
	defer func() {
		if settle != nil {
			settle.Stop()
		}
	}()
	var settleC <-chan time.Time
	for {
		changes := n.fsm.changed()
		var needPlan bool
		n.fsm.read(func(st *pb.CoordinatorState) {
			workers = cloneWorkers(st.GetWorkers())
			if st.GetPlan() == nil {
				needPlan = st.GetJob() != nil || len(st.GetWorkers()) > 0
			} else {
				needPlan = st.GetPlan().GetMembershipEpoch() != st.GetMembershipEpoch()
			}
		})
		d.syncLeases(t, workers)
		if needPlan && settleC == nil {
			settle = time.NewTimer(n.cfg.Settle)
			settleC = settle.C
		}
		select {
		case <-t.ctx.Done():
			return
		case <-changes:
		case <-d.kick:
		case <-d.verdictTimer(t):
			if b := d.takeReports(t); b != nil {
				d.judge(t, b)
			}
		case <-tick.C:
			for _, e := range d.expired(t) {
				log.Info("worker lease expired: proposing removal", "worker", e.id)
				_, err := n.apply(t.ctx, &pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{
					WorkerId: e.id, JoinedAt: e.joinedAt, Reason: "lease expired",
				}}})
				if err != nil {
					log.Warn("proposing removal failed", "worker", e.id, "err", err)
					break
				}
				d.forget(t, e.id, e.joinedAt)
			}
		case <-settleC:
			settleC = nil
			res, err := n.apply(t.ctx, &pb.Command{Op: &pb.Command_Replan{Replan: &pb.ReplanOp{}}})
			if err != nil {
				log.Warn("replan failed", "err", err)
				continue
			}
			p := res.GetPlan()
			log.Info("plan", "generation", p.GetGeneration(), "state", p.GetState().String(),
				"members", p.GetMembers(), "standby", p.GetStandby(), "reason", p.GetReason())
		}
	}
}

func cloneWorkers(ws []*pb.Worker) []*pb.Worker {
	out := make([]*pb.Worker, len(ws))
	for i, w := range ws {
		out[i] = proto.CloneOf(w)
	}
	return out
}
