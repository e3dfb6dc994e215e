package coordinator

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// service implements pb.CoordinatorServer on a Node. Every method translates its
// errors with toStatus; the semantics are documented in coordinator.proto.
type service struct {
	pb.UnimplementedCoordinatorServer
	n *Node
}

func (s *service) write(ctx context.Context, rid *pb.RequestID, c *pb.Command) (*pb.Result, error) {
	c.Rid = rid
	res, err := s.n.apply(ctx, c)
	return res, err
}

func (s *service) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	if left := s.n.duties.heldOff(req.GetWorkerId()); left > 0 {
		return nil, toStatus(fmt.Errorf("register %q: %w: %s more", req.GetWorkerId(), ErrHeldOff, left.Round(time.Millisecond)))
	}
	res, err := s.write(ctx, req.GetRid(), &pb.Command{Op: &pb.Command_Register{Register: &pb.RegisterOp{
		WorkerId: req.GetWorkerId(), Address: req.GetAddress(), Device: req.GetDevice(), Zone: req.GetZone(),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	if t := s.n.duties.currentTerm(); t != nil {
		s.n.duties.renew(t, res.GetWorker().GetId(), res.GetWorker().GetJoinedAt())
	}
	s.n.log.Info("worker registered", "worker", req.GetWorkerId(), "address", req.GetAddress(), "device", req.GetDevice(), "zone", req.GetZone())
	return &pb.RegisterResponse{Worker: res.GetWorker(), LeaseMs: s.n.cfg.Lease.Milliseconds()}, nil
}

func (s *service) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	t, err := s.n.duties.awaitReady(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	var w *pb.Worker
	var gen uint64
	s.n.fsm.read(func(st *pb.CoordinatorState) {
		if i, found := (&Machine{st: st}).findWorker(req.GetWorkerId()); found {
			w = proto.CloneOf(st.Workers[i])
		}
		gen = st.GetPlan().GetGeneration()
	})
	if w == nil {
		return nil, toStatus(fmt.Errorf("heartbeat: %w: %q", ErrUnknownWorker, req.GetWorkerId()))
	}
	s.n.duties.renew(t, w.GetId(), w.GetJoinedAt())
	return &pb.HeartbeatResponse{Generation: gen, LeaseMs: s.n.cfg.Lease.Milliseconds()}, nil
}

func (s *service) Leave(ctx context.Context, req *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	_, err := s.write(ctx, req.GetRid(), &pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{
		WorkerId: req.GetWorkerId(), Reason: "leave", MustExist: true,
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	s.n.log.Info("worker left", "worker", req.GetWorkerId())
	return &pb.LeaveResponse{}, nil
}

func (s *service) WatchPlan(req *pb.WatchPlanRequest, stream pb.Coordinator_WatchPlanServer) error {
	ctx := stream.Context()
	t, err := s.n.duties.awaitReady(ctx)
	if err != nil {
		return toStatus(err)
	}
	last := req.GetAfterGeneration()
	for {
		changes := s.n.fsm.changed()
		var plan *pb.Plan
		s.n.fsm.read(func(st *pb.CoordinatorState) {
			if st.GetPlan().GetGeneration() > last {
				plan = proto.CloneOf(st.GetPlan())
			}
		})
		if plan != nil {
			if err := stream.Send(plan); err != nil {
				return err
			}
			last = plan.GetGeneration()
		}
		select {
		case <-changes:
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-t.ctx.Done():
			return toStatus(s.n.notLeader())
		}
	}
}

func (s *service) ReportProgress(ctx context.Context, req *pb.ReportProgressRequest) (*pb.ReportProgressResponse, error) {
	res, err := s.write(ctx, req.GetRid(), &pb.Command{Op: &pb.Command_ReportProgress{ReportProgress: &pb.ReportProgressOp{
		WorkerId: req.GetWorkerId(), Generation: req.GetGeneration(), Step: req.GetStep(), Loss: req.GetLoss(), Tokens: req.GetTokens(),
		Ranks: req.GetRanks(),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReportProgressResponse{Progress: res.GetProgress()}, nil
}

func (s *service) CommitCheckpoint(ctx context.Context, req *pb.CommitCheckpointRequest) (*pb.CommitCheckpointResponse, error) {
	res, err := s.write(ctx, req.GetRid(), &pb.Command{Op: &pb.Command_CommitCheckpoint{CommitCheckpoint: &pb.CommitCheckpointOp{
		WorkerId: req.GetWorkerId(), Generation: req.GetGeneration(), Step: req.GetStep(), Location: req.GetLocation(), Sha256: req.GetSha256(),
		Final: req.GetFinal(), StopReason: req.GetStopReason(),
		JobVersion: req.GetJobVersion(),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	s.n.log.Info("checkpoint committed", "step", req.GetStep(), "location", req.GetLocation(), "worker", req.GetWorkerId(), "final", req.GetFinal())
	return &pb.CommitCheckpointResponse{Checkpoint: res.GetCheckpoint()}, nil
}

func (s *service) SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) (*pb.SubmitJobResponse, error) {
	job, err := admitJob(s.n.cfg.Jobs, req.GetJob())
	if err != nil {
		return nil, toStatus(err)
	}
	_, err = s.write(ctx, req.GetRid(), &pb.Command{Op: &pb.Command_SubmitJob{SubmitJob: &pb.SubmitJobOp{
		Job: job, Replace: req.GetReplace(),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitJobResponse{}, nil
}

func (s *service) FailJob(ctx context.Context, req *pb.FailJobRequest) (*pb.FailJobResponse, error) {
	res, err := s.write(ctx, req.GetRid(), &pb.Command{Op: &pb.Command_FailJob{FailJob: &pb.FailJobOp{
		WorkerId: req.GetWorkerId(), Generation: req.GetGeneration(), Step: req.GetStep(), Reason: req.GetReason(),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	s.n.log.Warn("job failed", "worker", req.GetWorkerId(), "step", req.GetStep(), "reason", res.GetJobStatus().GetReason())
	return &pb.FailJobResponse{Status: res.GetJobStatus()}, nil
}

func (s *service) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	if !req.GetStale() {
		if err := s.n.barrier(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	resp := &pb.StatusResponse{State: s.n.fsm.state()}
	s.n.raftStatus(resp)
	return resp, nil
}

func (s *service) AddVoter(ctx context.Context, req *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	if r := checkName("id", req.GetId(), maxIDLen); r != nil {
		return nil, toStatus(ResultError(r))
	}
	if r := checkName("raft_addr", req.GetRaftAddr(), maxAddrLen); r != nil && !req.GetRecordOnly() {
		return nil, toStatus(ResultError(r))
	}
	if r := checkName("grpc_addr", req.GetGrpcAddr(), maxAddrLen); r != nil {
		return nil, toStatus(ResultError(r))
	}
	if s.n.raft.State() != raft.Leader {
		return nil, toStatus(s.n.notLeader())
	}
	if req.GetRecordOnly() {
		f := s.n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return nil, toStatus(s.n.raftError("configuration", err))
		}
		if !slices.ContainsFunc(f.Configuration().Servers, func(sv raft.Server) bool { return string(sv.ID) == req.GetId() }) {
			return nil, toStatus(fmt.Errorf("%w: replica %q is not in the Raft configuration", ErrBadCommand, req.GetId()))
		}
	} else {
		f := s.n.raft.AddVoter(raft.ServerID(req.GetId()), raft.ServerAddress(req.GetRaftAddr()), 0, s.n.cfg.ApplyTimeout)
		if err := s.n.raftError("add voter", wait(ctx, f)); err != nil {
			return nil, toStatus(err)
		}
	}
	_, err := s.n.apply(ctx, &pb.Command{Op: &pb.Command_SetReplica{SetReplica: &pb.SetReplicaOp{Id: req.GetId(), GrpcAddr: req.GetGrpcAddr()}}})
	if err != nil {
		return nil, toStatus(err)
	}
	s.n.log.Info("replica recorded", "id", req.GetId(), "raft", req.GetRaftAddr(), "grpc", req.GetGrpcAddr(), "record_only", req.GetRecordOnly())
	return &pb.AddVoterResponse{}, nil
}

func (s *service) RemoveServer(ctx context.Context, req *pb.RemoveServerRequest) (*pb.RemoveServerResponse, error) {
	if r := checkName("id", req.GetId(), maxIDLen); r != nil {
		return nil, toStatus(ResultError(r))
	}
	if _, err := s.n.apply(ctx, &pb.Command{Op: &pb.Command_RemoveReplica{RemoveReplica: &pb.RemoveReplicaOp{Id: req.GetId()}}}); err != nil {
		return nil, toStatus(err)
	}
	f := s.n.raft.RemoveServer(raft.ServerID(req.GetId()), 0, s.n.cfg.ApplyTimeout)
	if err := s.n.raftError("remove server", wait(ctx, f)); err != nil {
		return nil, toStatus(err)
	}
	s.n.log.Info("server removed", "id", req.GetId())
	return &pb.RemoveServerResponse{}, nil
}

func (s *service) Leader(ctx context.Context, _ *pb.LeaderRequest) (*pb.LeaderResponse, error) {
	addr, id := s.n.raft.LeaderWithID()
	resp := &pb.LeaderResponse{Id: string(id), RaftAddr: string(addr)}
	if nl, ok := s.n.notLeader().(*NotLeaderError); ok {
		resp.GrpcAddr = nl.LeaderAddr
	}
	return resp, nil
}
