package coordinator

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// Versions of the replicated formats. A replica refuses a command or a snapshot whose
// version it does not know rather than guess. Version 2 of both added the job's
// lifecycle (job_lifecycle.go): FailJobOp and CoordinatorState.job_status. Version 3
// added the final mark of a checkpoint commit and its stop reason (CommitCheckpointOp
// final and stop_reason, Checkpoint final and stop_reason, JobStatus stop_reason), by
// which a job that stops early finishes. Commands of versions 1 and 2 (an older log)
// are applied by the same rules and may not carry the final mark; a state of version
// 1 (an older snapshot) is restored with its job status derived, and one of version 2
// as it is.
const (
	CommandVersion = 3
	StateVersion   = 3

	minCommandVersion = 1
	minStateVersion   = 1
)

// Bounds on the replicated state. They keep a snapshot small whatever the clients do.
const (
	// MaxSessionEntries is how many recent requests are remembered per client.
	MaxSessionEntries = 64
	// MaxSessions is how many clients are remembered; the one idle longest (by Raft
	// index) is forgotten first.
	MaxSessions = 1024
	// MaxCheckpoints is how many committed checkpoints are kept (the newest).
	MaxCheckpoints = 32

	// MaxReasonLen is the most bytes of a free-text reason kept in the state (a
	// FailJob or RemoveWorker reason): a longer one is truncated (truncateText).
	MaxReasonLen = 4096
	// MaxMessageLen is the most bytes of a Result's error message, which sessions
	// remember: a longer one is truncated, so a client cannot grow the replicated
	// session table with its own input echoed back.
	MaxMessageLen = 1024
	// MaxCommandBytes is the largest encoded command Apply accepts (and the leader
	// proposes): a job spec's JSON of up to 4 MiB and room for the rest.
	MaxCommandBytes = maxSpecJSON + 64<<10

	maxIDLen      = 128
	maxAddrLen    = 256
	maxTextLen    = 4096
	maxStreams    = 1 << 16
	maxSpecJSON   = 4 << 20
	maxRequestIDs = 1 << 62
	sha256Size    = sha256.Size
	// maxQuoted is how many bytes of a bad value an error message quotes.
	maxQuoted = 128
)

// JobPolicy checks the inside of a job (spec_json and the paths it names), which the
// coordinator does not read itself; cmd/ringtrain passes jobspec.Policy. Both methods
// may be called concurrently.
type JobPolicy interface {
	// Check is a pure, deterministic check of a job, the same on every replica
	// whatever its flags: the state machine calls it when it applies a SubmitJob
	// and when it restores a state with a job. It must read nothing but job.
	Check(job *pb.JobSpec) error
	// Admit is the leader's check of a submitted job before it is proposed: Check,
	// the configured limits, the paths confined under the data root. It returns the
	// job to propose (paths resolved), or an error wrapping ErrBadCommand that
	// names the field and value.
	Admit(job *pb.JobSpec) (*pb.JobSpec, error)
}

// Machine is the coordinator's deterministic state machine: the pure core that the
// Raft FSM adapter (raftFSM) wraps. Apply decodes a command, checks it against the
// state and applies it; it reads no clock, does no I/O, iterates no map in an order
// that could leak into the state, and never panics, whatever the bytes: an invalid
// command leaves the state unchanged (but for applied_index and the request's
// session entry) and returns a Result with an error code.
//
// A Machine is not safe for concurrent use; raftFSM serialises access.
type Machine struct {
	st   *pb.CoordinatorState
	jobs JobPolicy // nil: only the coordinator's own fields of a job are checked
}

// NewMachine returns a Machine with an empty state that checks jobs with jobs.Check
// (nil: only the coordinator's own fields of a job, checkJob).
func NewMachine(jobs JobPolicy) *Machine {
	return &Machine{st: &pb.CoordinatorState{Version: StateVersion}, jobs: jobs}
}

// State returns a deep copy of the whole state, owned by the caller.
func (m *Machine) State() *pb.CoordinatorState { return proto.CloneOf(m.st) }

// view returns the live state for read-only use under the caller's lock.
func (m *Machine) view() *pb.CoordinatorState { return m.st }

// Restore replaces the state with a copy of st after checking it (version, sort
// order, references), so that a corrupt snapshot is an error, not a later panic.
func (m *Machine) Restore(st *pb.CoordinatorState) error {
	if err := checkState(st); err != nil {
		return err
	}
	if st.Job != nil && m.jobs != nil {
		if err := m.jobs.Check(st.Job); err != nil {
			return fmt.Errorf("%w: state: job: %w", ErrBadCommand, err)
		}
	}
	m.st = upgradeState(proto.CloneOf(st))
	return nil
}

// EncodeCommand marshals a command envelope, filling in its version.
func EncodeCommand(c *pb.Command) ([]byte, error) {
	c.Version = CommandVersion
	b, err := proto.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("coordinator: encode command: %w", err)
	}
	return b, nil
}

// Apply applies the command encoded in data as Raft log entry index and returns its
// result (never nil). index must increase from call to call; it is the logical time
// recorded as a worker's joined_at. Called by raftFSM.Apply on Raft's FSM goroutine.
func (m *Machine) Apply(index uint64, data []byte) *pb.Result {
	m.st.AppliedIndex = index
	if len(data) > MaxCommandBytes {
		return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "command of %d bytes exceeds %d", len(data), MaxCommandBytes)
	}
	var c pb.Command
	if err := proto.Unmarshal(data, &c); err != nil {
		return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "decode command: %v", err)
	}
	if c.GetVersion() < minCommandVersion || c.GetVersion() > CommandVersion {
		return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "command version %d, want %d..%d", c.GetVersion(), minCommandVersion, CommandVersion)
	}
	rid := c.GetRid()
	if rid.GetRequestId() != 0 {
		if rid.GetClientId() == "" || len(rid.GetClientId()) > maxIDLen || rid.GetRequestId() >= maxRequestIDs {
			return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "rid: client_id must be 1..%d bytes with request_id < 2^62", maxIDLen)
		}
		if r := m.lookupSession(rid); r != nil {
			return proto.CloneOf(r)
		}
	}
	res := m.dispatch(index, &c)
	if rid.GetRequestId() != 0 {
		m.remember(index, rid, res)
	}
	return proto.CloneOf(res)
}

func (m *Machine) dispatch(index uint64, c *pb.Command) *pb.Result {
	switch op := c.GetOp().(type) {
	case *pb.Command_SubmitJob:
		return m.submitJob(op.SubmitJob)
	case *pb.Command_Register:
		return m.register(index, op.Register)
	case *pb.Command_RemoveWorker:
		return m.removeWorker(op.RemoveWorker)
	case *pb.Command_Replan:
		return m.replan()
	case *pb.Command_ReportProgress:
		return m.reportProgress(op.ReportProgress)
	case *pb.Command_CommitCheckpoint:
		return m.commitCheckpoint(c.GetVersion(), op.CommitCheckpoint)
	case *pb.Command_SetReplica:
		return m.setReplica(op.SetReplica)
	case *pb.Command_RemoveReplica:
		return m.removeReplica(op.RemoveReplica)
	case *pb.Command_FailJob:
		return m.failJob(op.FailJob)
	default:
		return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "command has no operation")
	}
}

// ok is the empty success result.
func ok() *pb.Result { return &pb.Result{} }

func badField(field string, v any, why string) *pb.Result {
	return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "%s=%q %s", field, truncateText(fmt.Sprint(v), maxQuoted), why)
}

// truncateText returns s cut to at most limit bytes at a UTF-8 boundary, marked with
// a trailing "…" (within the limit) when cut. It is deterministic: replicas that
// truncate the same text keep the same bytes.
func truncateText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const mark = "…"
	cut := max(limit-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func checkName(field, v string, limit int) *pb.Result {
	if v == "" || len(v) > limit {
		return badField(field, v, fmt.Sprintf("must be 1..%d bytes", limit))
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return badField(field, v, "must not contain control characters")
		}
	}
	return nil
}

// admitJob runs the leader's check of a submitted job (JobPolicy.Admit) when there
// is a policy, and returns the job to propose. Errors wrap ErrBadCommand.
func admitJob(jobs JobPolicy, job *pb.JobSpec) (*pb.JobSpec, error) {
	if r := checkJob(job); r != nil {
		return nil, ResultError(r)
	}
	if jobs == nil {
		return job, nil
	}
	out, err := jobs.Admit(job)
	if err != nil {
		if !errors.Is(err, ErrBadCommand) {
			err = fmt.Errorf("%w: %w", ErrBadCommand, err)
		}
		return nil, err
	}
	return out, nil
}

// ValidateJob checks the coordinator's fields of a job spec and names the first bad one.
func ValidateJob(j *pb.JobSpec) error {
	if r := checkJob(j); r != nil {
		return ResultError(r)
	}
	return nil
}

func checkJob(j *pb.JobSpec) *pb.Result {
	switch {
	case j == nil:
		return badField("job", "", "is required")
	case j.GetStreams() < 1 || j.GetStreams() > maxStreams:
		return badField("job.streams", j.GetStreams(), fmt.Sprintf("must be in [1, %d]", maxStreams))
	case j.GetMinWorkers() < 0:
		return badField("job.min_workers", j.GetMinWorkers(), "must be >= 0")
	case j.GetMaxWorkers() < 0:
		return badField("job.max_workers", j.GetMaxWorkers(), "must be >= 0 (0: one worker per stream)")
	case j.GetMinWorkers() > j.GetStreams():
		return badField("job.min_workers", j.GetMinWorkers(), fmt.Sprintf("exceeds streams %d (a worker needs a stream)", j.GetStreams()))
	case j.GetMaxWorkers() > 0 && j.GetMinWorkers() > j.GetMaxWorkers():
		return badField("job.min_workers", j.GetMinWorkers(), fmt.Sprintf("exceeds max_workers %d", j.GetMaxWorkers()))
	case j.GetSteps() < 1:
		return badField("job.steps", j.GetSteps(), "must be >= 1")
	case j.GetCheckpointInterval() < 0:
		return badField("job.checkpoint_interval", j.GetCheckpointInterval(), "must be >= 0")
	case len(j.GetSpecJson()) > maxSpecJSON:
		return badField("job.spec_json", fmt.Sprintf("%d bytes", len(j.GetSpecJson())), fmt.Sprintf("exceeds %d bytes", maxSpecJSON))
	}
	return nil
}

func (m *Machine) submitJob(op *pb.SubmitJobOp) *pb.Result {
	if r := checkJob(op.GetJob()); r != nil {
		return r
	}
	if m.jobs != nil {
		if err := m.jobs.Check(op.GetJob()); err != nil {
			return failure(pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "%v", err)
		}
	}
	if m.st.Job != nil {
		if proto.Equal(m.st.Job, op.GetJob()) {
			if op.GetReplace() && m.st.GetJobStatus().GetState() == pb.JobState_JOB_STATE_FAILED {
				// The same job again: it resumes from its committed progress (and is
				// FINISHED at once if that progress already holds its end).
				m.st.JobStatus = &pb.JobStatus{State: pb.JobState_JOB_STATE_RUNNING}
				m.maybeFinish()
				m.st.MembershipEpoch++
			}
			return ok()
		}
		if !op.GetReplace() {
			return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "a different job is already submitted (set replace)")
		}
		// A new job starts from scratch: the old progress and checkpoints are not its.
		m.st.Progress = nil
		m.st.Checkpoints = nil
	}
	m.st.Job = proto.CloneOf(op.GetJob())
	m.st.JobVersion++
	m.st.JobStatus = &pb.JobStatus{State: pb.JobState_JOB_STATE_RUNNING}
	m.st.MembershipEpoch++
	return ok()
}

func (m *Machine) findWorker(id string) (int, bool) {
	return slices.BinarySearchFunc(m.st.Workers, id, func(w *pb.Worker, id string) int { return cmp.Compare(w.GetId(), id) })
}

func (m *Machine) register(index uint64, op *pb.RegisterOp) *pb.Result {
	if r := checkName("worker_id", op.GetWorkerId(), maxIDLen); r != nil {
		return r
	}
	if r := checkName("address", op.GetAddress(), maxAddrLen); r != nil {
		return r
	}
	if len(op.GetDevice()) > maxIDLen {
		return badField("device", op.GetDevice(), fmt.Sprintf("must be at most %d bytes", maxIDLen))
	}
	if len(op.GetZone()) > maxIDLen {
		return badField("zone", op.GetZone(), fmt.Sprintf("must be at most %d bytes", maxIDLen))
	}
	i, found := m.findWorker(op.GetWorkerId())
	if found {
		w := m.st.Workers[i]
		if w.GetAddress() != op.GetAddress() || w.GetDevice() != op.GetDevice() || w.GetZone() != op.GetZone() {
			w.Address, w.Device, w.Zone = op.GetAddress(), op.GetDevice(), op.GetZone()
			m.st.MembershipEpoch++
		}
		return &pb.Result{Worker: proto.CloneOf(w)}
	}
	w := &pb.Worker{Id: op.GetWorkerId(), Address: op.GetAddress(), Device: op.GetDevice(), Zone: op.GetZone(), JoinedAt: index}
	m.st.Workers = slices.Insert(m.st.Workers, i, w)
	m.st.MembershipEpoch++
	return &pb.Result{Worker: proto.CloneOf(w)}
}

func (m *Machine) removeWorker(op *pb.RemoveWorkerOp) *pb.Result {
	if r := checkName("worker_id", op.GetWorkerId(), maxIDLen); r != nil {
		return r
	}
	if len(op.GetReason()) > maxTextLen {
		return badField("reason", fmt.Sprintf("%d bytes", len(op.GetReason())), fmt.Sprintf("exceeds %d bytes", maxTextLen))
	}
	i, found := m.findWorker(op.GetWorkerId())
	if !found {
		if op.GetMustExist() {
			return failure(pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER, "worker %q is not registered", op.GetWorkerId())
		}
		return ok()
	}
	if op.GetJoinedAt() != 0 && m.st.Workers[i].GetJoinedAt() != op.GetJoinedAt() {
		return ok() // a removal meant for an earlier incarnation
	}
	m.st.Workers = slices.Delete(m.st.Workers, i, i+1)
	m.st.MembershipEpoch++
	return ok()
}

func (m *Machine) replan() *pb.Result {
	prev := m.st.Plan
	var next *pb.Plan
	if m.st.Job != nil && !m.running() {
		next = endedPlan(m.st.JobStatus, m.st.Workers)
	} else {
		next = NextPlan(m.st.Job, m.st.Workers, prev)
	}
	next.JobVersion = m.st.JobVersion
	if prev != nil && samePlan(prev, next) {
		prev.MembershipEpoch = m.st.MembershipEpoch
		return &pb.Result{Plan: proto.CloneOf(prev)}
	}
	next.JobVersion = m.st.JobVersion
	next.Generation = prev.GetGeneration() + 1
	next.StartStep = m.st.GetProgress().GetStep()
	next.MembershipEpoch = m.st.MembershipEpoch
	m.st.Plan = next
	return &pb.Result{Plan: proto.CloneOf(next)}
}

// checkMember validates the (worker, generation) of a progress or checkpoint report.
func (m *Machine) checkMember(id string, gen uint64) *pb.Result {
	if r := checkName("worker_id", id, maxIDLen); r != nil {
		return r
	}
	if m.st.Job == nil {
		return failure(pb.ErrorCode_ERROR_CODE_NO_JOB, "no job submitted")
	}
	if _, found := m.findWorker(id); !found {
		return failure(pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER, "worker %q is not registered", id)
	}
	cur := m.st.GetPlan().GetGeneration()
	switch {
	case gen < cur:
		return failure(pb.ErrorCode_ERROR_CODE_STALE_GENERATION, "generation %d, current %d", gen, cur)
	case gen > cur:
		return badField("generation", gen, fmt.Sprintf("is newer than the current %d", cur))
	case m.st.Plan.GetState() != pb.PlanState_PLAN_STATE_ACTIVE || RankOf(m.st.Plan, id) < 0:
		return failure(pb.ErrorCode_ERROR_CODE_NOT_MEMBER, "worker %q is not a member of generation %d", id, cur)
	}
	return nil
}

func (m *Machine) reportProgress(op *pb.ReportProgressOp) *pb.Result {
	if r := m.checkMember(op.GetWorkerId(), op.GetGeneration()); r != nil {
		return r
	}
	switch {
	case op.GetStep() < 0:
		return badField("step", op.GetStep(), "must be >= 0")
	case math.IsNaN(op.GetLoss()) || math.IsInf(op.GetLoss(), 0):
		return badField("loss", op.GetLoss(), "must be finite")
	case op.GetTokens() < 0:
		return badField("tokens", op.GetTokens(), "must be >= 0")
	}
	if r := checkRankTimes(op.GetRanks()); r != nil {
		return r
	}
	if m.st.Progress != nil && op.GetStep() <= m.st.Progress.GetStep() {
		return &pb.Result{Progress: proto.CloneOf(m.st.Progress)}
	}
	m.st.Progress = &pb.Progress{
		Step: op.GetStep(), Loss: op.GetLoss(), Tokens: op.GetTokens(),
		Generation: op.GetGeneration(), WorkerId: op.GetWorkerId(), Ranks: cloneRankTimes(op.GetRanks()),
	}
	m.maybeFinish()
	return &pb.Result{Progress: proto.CloneOf(m.st.Progress)}
}

func checkSHA256(v string) bool {
	if len(v) != 2*sha256Size {
		return false
	}
	for _, c := range []byte(v) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// commitCheckpoint records a checkpoint, or finds it recorded; a final one (the
// rules in job_lifecycle.go, checkFinalMark) also marks the record final. version is
// the command's.
func (m *Machine) commitCheckpoint(version uint32, op *pb.CommitCheckpointOp) *pb.Result {
	if r := m.checkMember(op.GetWorkerId(), op.GetGeneration()); r != nil {
		return r
	}
	if op.GetJobVersion() != 0 && op.GetJobVersion() != m.st.GetJobVersion() {
		return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "checkpoint of job version %d: the current job is version %d", op.GetJobVersion(), m.st.GetJobVersion())
	}
	if op.GetStep() < 0 {
		return badField("step", op.GetStep(), "must be >= 0")
	}
	if r := checkName("location", op.GetLocation(), maxTextLen); r != nil {
		return r
	}
	if !checkSHA256(op.GetSha256()) {
		return badField("sha256", op.GetSha256(), "must be 64 lowercase hex digits")
	}
	if r := m.checkFinalMark(version, op); r != nil {
		return r
	}
	i, found := slices.BinarySearchFunc(m.st.Checkpoints, op.GetStep(), func(c *pb.Checkpoint, s int64) int { return cmp.Compare(c.GetStep(), s) })
	if found {
		c := m.st.Checkpoints[i]
		if c.GetSha256() != op.GetSha256() {
			return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "step %d is committed with sha256 %s", op.GetStep(), c.GetSha256())
		}
		if op.GetFinal() && !c.GetFinal() {
			c.Final, c.StopReason = true, op.GetStopReason()
		}
		m.maybeFinish()
		return &pb.Result{Checkpoint: proto.CloneOf(c)}
	}
	if len(m.st.Checkpoints) >= MaxCheckpoints && i == 0 {
		return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "step %d is older than the %d kept checkpoints", op.GetStep(), MaxCheckpoints)
	}
	c := &pb.Checkpoint{
		Step: op.GetStep(), Location: op.GetLocation(), Sha256: op.GetSha256(),
		Generation: op.GetGeneration(), WorkerId: op.GetWorkerId(),
		Final: op.GetFinal(), StopReason: op.GetStopReason(),
	}
	m.st.Checkpoints = slices.Insert(m.st.Checkpoints, i, c)
	if n := len(m.st.Checkpoints); n > MaxCheckpoints {
		m.st.Checkpoints = slices.Delete(m.st.Checkpoints, 0, n-MaxCheckpoints)
	}
	m.maybeFinish()
	return &pb.Result{Checkpoint: proto.CloneOf(c)}
}

func (m *Machine) findReplica(id string) (int, bool) {
	return slices.BinarySearchFunc(m.st.Replicas, id, func(r *pb.Replica, id string) int { return cmp.Compare(r.GetId(), id) })
}

func (m *Machine) setReplica(op *pb.SetReplicaOp) *pb.Result {
	if r := checkName("replica id", op.GetId(), maxIDLen); r != nil {
		return r
	}
	if r := checkName("grpc_addr", op.GetGrpcAddr(), maxAddrLen); r != nil {
		return r
	}
	i, found := m.findReplica(op.GetId())
	if found {
		m.st.Replicas[i].GrpcAddr = op.GetGrpcAddr()
		return ok()
	}
	m.st.Replicas = slices.Insert(m.st.Replicas, i, &pb.Replica{Id: op.GetId(), GrpcAddr: op.GetGrpcAddr()})
	return ok()
}

func (m *Machine) removeReplica(op *pb.RemoveReplicaOp) *pb.Result {
	if r := checkName("replica id", op.GetId(), maxIDLen); r != nil {
		return r
	}
	if i, found := m.findReplica(op.GetId()); found {
		m.st.Replicas = slices.Delete(m.st.Replicas, i, i+1)
	}
	return ok()
}

// ---- sessions (deduplication) ----

func (m *Machine) findSession(client string) (int, bool) {
	return slices.BinarySearchFunc(m.st.Sessions, client, func(s *pb.Session, c string) int { return cmp.Compare(s.GetClientId(), c) })
}

func (m *Machine) lookupSession(rid *pb.RequestID) *pb.Result {
	i, found := m.findSession(rid.GetClientId())
	if !found {
		return nil
	}
	for _, e := range m.st.Sessions[i].GetEntries() {
		if e.GetRequestId() == rid.GetRequestId() {
			return e.GetResult()
		}
	}
	return nil
}

func (m *Machine) remember(index uint64, rid *pb.RequestID, res *pb.Result) {
	i, found := m.findSession(rid.GetClientId())
	if !found {
		if len(m.st.Sessions) >= MaxSessions {
			// Forget the client idle longest; last_index values are distinct.
			oldest := 0
			for j, s := range m.st.Sessions {
				if s.GetLastIndex() < m.st.Sessions[oldest].GetLastIndex() {
					oldest = j
				}
			}
			m.st.Sessions = slices.Delete(m.st.Sessions, oldest, oldest+1)
			i, _ = m.findSession(rid.GetClientId())
		}
		m.st.Sessions = slices.Insert(m.st.Sessions, i, &pb.Session{ClientId: rid.GetClientId()})
	}
	s := m.st.Sessions[i]
	s.LastIndex = index
	s.Entries = append(s.Entries, &pb.SessionEntry{RequestId: rid.GetRequestId(), Result: proto.CloneOf(res)})
	if n := len(s.Entries); n > MaxSessionEntries {
		s.Entries = slices.Delete(s.Entries, 0, n-MaxSessionEntries)
	}
}

// ---- state checks (Restore) ----

func checkState(st *pb.CoordinatorState) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: state: %s", ErrBadCommand, fmt.Sprintf(format, args...))
	}
	if st == nil {
		return bad("missing")
	}
	if st.GetVersion() < minStateVersion || st.GetVersion() > StateVersion {
		return bad("version %d, want %d..%d", st.GetVersion(), minStateVersion, StateVersion)
	}
	if st.Job != nil {
		if r := checkJob(st.Job); r != nil {
			return bad("job: %s", r.GetMessage())
		}
	}
	if err := checkJobStatus(st); err != nil {
		return bad("%v", err)
	}
	for i := 1; i < len(st.GetWorkers()); i++ {
		if st.Workers[i-1].GetId() >= st.Workers[i].GetId() {
			return bad("workers not sorted by id at %d", i)
		}
	}
	for i := 1; i < len(st.GetReplicas()); i++ {
		if st.Replicas[i-1].GetId() >= st.Replicas[i].GetId() {
			return bad("replicas not sorted by id at %d", i)
		}
	}
	for i := 1; i < len(st.GetSessions()); i++ {
		if st.Sessions[i-1].GetClientId() >= st.Sessions[i].GetClientId() {
			return bad("sessions not sorted by client at %d", i)
		}
	}
	for i := 1; i < len(st.GetCheckpoints()); i++ {
		if st.Checkpoints[i-1].GetStep() >= st.Checkpoints[i].GetStep() {
			return bad("checkpoints not ascending at %d", i)
		}
	}
	if err := checkFinalMarks(st); err != nil {
		return bad("%v", err)
	}
	if st.Job == nil && st.GetJobVersion() != 0 {
		return bad("job version %d without a job", st.GetJobVersion())
	}
	if p := st.GetPlan(); p != nil {
		if p.GetJobVersion() > st.GetJobVersion() {
			return bad("plan of job version %d, newer than the state's %d", p.GetJobVersion(), st.GetJobVersion())
		}
		if len(p.GetMembers()) != len(p.GetWorkers()) {
			return bad("plan has %d members but %d worker records", len(p.GetMembers()), len(p.GetWorkers()))
		}
		for m, owner := range p.GetStreamOwner() {
			if !slices.Contains(p.GetMembers(), owner) {
				return bad("plan stream %d owned by non-member %q", m, owner)
			}
		}
	}
	return nil
}
