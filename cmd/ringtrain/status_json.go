package main

import (
	"encoding/json"
	"io"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// The shape of `ringtrain status --json`: the replicated state as plain JSON for
// scripts and jq. Keys are the protobuf field names; integers are JSON numbers
// (not protojson's strings); states are lower-case words ("running", "finished",
// "failed"; plans "active", "waiting", "ended"); the job's trainer spec is decoded
// into an object under job.spec. Absent parts (no job, no plan yet, no progress,
// no checkpoint) are null; lists are never null.
type statusJSON struct {
	AnsweredBy     string          `json:"answered_by"`
	Leader         string          `json:"leader"`
	LeaderAddr     string          `json:"leader_addr"`
	Term           uint64          `json:"term"`
	CommitIndex    uint64          `json:"commit_index"`
	AppliedIndex   uint64          `json:"applied_index"`
	Replicas       []replicaJSON   `json:"replicas"`
	Job            *jobJSON        `json:"job"`
	Plan           *planJSON       `json:"plan"`
	Workers        []workerJSON    `json:"workers"`
	Progress       *progressJSON   `json:"progress"`
	LastCheckpoint *checkpointJSON `json:"last_checkpoint"`
}

type replicaJSON struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	GRPCAddr string `json:"grpc_addr"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	Health   string `json:"health"`
}

// jobJSON is the job and its lifecycle. final_checkpoint and final_step are set
// when the job finished, stop_reason when it finished early (the rule that stopped
// it: "target_val_loss", "patience", "max_time"), failure when it failed.
type jobJSON struct {
	State              string          `json:"state"`
	Spec               json.RawMessage `json:"spec"`                 // the trainer spec, decoded; null when it cannot be
	SpecError          string          `json:"spec_error,omitempty"` // why the spec could not be decoded
	Streams            int32           `json:"streams"`
	MinWorkers         int32           `json:"min_workers"`
	MaxWorkers         int32           `json:"max_workers"`
	Steps              int64           `json:"steps"`
	CheckpointInterval int64           `json:"checkpoint_interval"`
	FinalCheckpoint    *checkpointJSON `json:"final_checkpoint"`
	FinalStep          *int64          `json:"final_step"`
	StopReason         string          `json:"stop_reason"`
	Failure            *failureJSON    `json:"failure"`
}

type failureJSON struct {
	Reason     string `json:"reason"`
	WorkerID   string `json:"worker_id"`
	Step       int64  `json:"step"`
	Generation uint64 `json:"generation"`
}

type planJSON struct {
	Generation      uint64       `json:"generation"`
	State           string       `json:"state"`
	Reason          string       `json:"reason"`
	Members         []string     `json:"members"`
	StreamOwner     []string     `json:"stream_owner"`
	StartStep       int64        `json:"start_step"`
	Standby         []string     `json:"standby"`
	Workers         []workerJSON `json:"workers"`
	MembershipEpoch uint64       `json:"membership_epoch"`
}

type workerJSON struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Device   string `json:"device"`
	JoinedAt uint64 `json:"joined_at"`
	Zone     string `json:"zone,omitempty"`
}

type progressJSON struct {
	Step       int64   `json:"step"`
	Loss       float64 `json:"loss"`
	Tokens     int64   `json:"tokens"`
	Generation uint64  `json:"generation"`
	WorkerID   string  `json:"worker_id"`
	// Ranks are every rank's mean step times over its last steps, as rank 0
	// last reported them; Straggler is the slowest of them (null without them).
	Ranks     []rankTimeJSON `json:"ranks"`
	Straggler *stragglerJSON `json:"straggler"`
}

type rankTimeJSON struct {
	Rank     int32   `json:"rank"`
	WorkerID string  `json:"worker_id"`
	ComputeS float64 `json:"compute_s"`
	WaitS    float64 `json:"wait_s"`
}

// stragglerJSON is the slowest rank and the mean time the other ranks waited
// for it per step.
type stragglerJSON struct {
	Rank        int32   `json:"rank"`
	WorkerID    string  `json:"worker_id"`
	ComputeS    float64 `json:"compute_s"`
	OthersWaitS float64 `json:"others_wait_s"`
}

type checkpointJSON struct {
	Step       int64  `json:"step"`
	Location   string `json:"location"`
	SHA256     string `json:"sha256"`
	Generation uint64 `json:"generation"`
	WorkerID   string `json:"worker_id"`
	Final      bool   `json:"final"`                 // the checkpoint the job ended with
	StopReason string `json:"stop_reason,omitempty"` // final before the job's steps: the rule that stopped it
}

// statusView builds the JSON view of a Status answer; health is each replica's
// health probe by id.
func statusView(st *pb.StatusResponse, health map[string]string) statusJSON {
	s := st.GetState()
	out := statusJSON{
		AnsweredBy: st.GetReplicaId(), Leader: st.GetLeaderId(), LeaderAddr: st.GetLeaderAddr(),
		Term: st.GetTerm(), CommitIndex: st.GetCommitIndex(), AppliedIndex: st.GetAppliedIndex(),
		Replicas: []replicaJSON{}, Job: jobView(s), Plan: planView(s.GetPlan()),
		Workers: workersView(s.GetWorkers()), Progress: progressView(s.GetProgress()),
	}
	for _, r := range st.GetReplicas() {
		out.Replicas = append(out.Replicas, replicaJSON{r.GetId(), r.GetRaftAddr(), r.GetGrpcAddr(), r.GetSuffrage(), r.GetLeader(), health[r.GetId()]})
	}
	if cks := s.GetCheckpoints(); len(cks) > 0 {
		out.LastCheckpoint = checkpointView(cks[len(cks)-1])
	}
	return out
}

func jobView(s *pb.CoordinatorState) *jobJSON {
	j := s.GetJob()
	if j == nil {
		return nil
	}
	status := coordinator.JobStatusOf(s)
	out := &jobJSON{
		State: coordinator.JobStateName(status.GetState()), Spec: json.RawMessage("null"),
		Streams: j.GetStreams(), MinWorkers: j.GetMinWorkers(), MaxWorkers: j.GetMaxWorkers(),
		Steps: j.GetSteps(), CheckpointInterval: j.GetCheckpointInterval(),
		FinalCheckpoint: checkpointView(status.GetFinalCheckpoint()),
	}
	if spec, err := jobspec.Decode(j); err != nil {
		out.SpecError = err.Error()
	} else if b, err := json.Marshal(spec); err != nil {
		out.SpecError = err.Error()
	} else {
		out.Spec = b
	}
	if status.GetState() == pb.JobState_JOB_STATE_FINISHED {
		step := status.GetStep()
		out.FinalStep, out.StopReason = &step, status.GetStopReason()
	}
	if status.GetState() == pb.JobState_JOB_STATE_FAILED {
		out.Failure = &failureJSON{Reason: status.GetReason(), WorkerID: status.GetWorkerId(), Step: status.GetStep(), Generation: status.GetGeneration()}
	}
	return out
}

func planView(p *pb.Plan) *planJSON {
	if p == nil {
		return nil
	}
	return &planJSON{
		Generation: p.GetGeneration(), State: coordinator.PlanStateName(p.GetState()), Reason: p.GetReason(),
		Members: nonNil(p.GetMembers()), StreamOwner: nonNil(p.GetStreamOwner()), StartStep: p.GetStartStep(),
		Standby: nonNil(p.GetStandby()), Workers: workersView(p.GetWorkers()), MembershipEpoch: p.GetMembershipEpoch(),
	}
}

func workersView(ws []*pb.Worker) []workerJSON {
	out := []workerJSON{}
	for _, w := range ws {
		out = append(out, workerJSON{ID: w.GetId(), Address: w.GetAddress(), Device: w.GetDevice(), JoinedAt: w.GetJoinedAt(), Zone: w.GetZone()})
	}
	return out
}

func progressView(p *pb.Progress) *progressJSON {
	if p == nil {
		return nil
	}
	v := &progressJSON{Step: p.GetStep(), Loss: p.GetLoss(), Tokens: p.GetTokens(), Generation: p.GetGeneration(), WorkerID: p.GetWorkerId(),
		Ranks: []rankTimeJSON{}}
	for _, r := range p.GetRanks() {
		v.Ranks = append(v.Ranks, rankTimeJSON{Rank: r.GetRank(), WorkerID: r.GetWorkerId(), ComputeS: r.GetComputeS(), WaitS: r.GetWaitS()})
	}
	if s := coordinator.FindStraggler(p.GetRanks()); s.Slowest != nil {
		v.Straggler = &stragglerJSON{Rank: s.Slowest.GetRank(), WorkerID: s.Slowest.GetWorkerId(), ComputeS: s.Slowest.GetComputeS(), OthersWaitS: s.OthersWaitS}
	}
	return v
}

func checkpointView(c *pb.Checkpoint) *checkpointJSON {
	if c == nil {
		return nil
	}
	return &checkpointJSON{Step: c.GetStep(), Location: c.GetLocation(), SHA256: c.GetSha256(), Generation: c.GetGeneration(), WorkerID: c.GetWorkerId(),
		Final: c.GetFinal(), StopReason: c.GetStopReason()}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// printStatusJSON writes the JSON view of st as one indented object.
func printStatusJSON(w io.Writer, st *pb.StatusResponse, health map[string]string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(statusView(st, health))
}
