package coordinator

import (
	"errors"
	"fmt"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// The coordinator's sentinel errors. Functions wrap them with %w and context; callers
// test with errors.Is. The gRPC service translates them to status codes at the edge
// (see grpc_errors.go) and the Client translates the codes back, so a caller of Client
// sees the same sentinels a caller of the state machine does.
var (
	// ErrNotLeader: the replica is not the Raft leader (or lost leadership while the
	// request was in flight). A NotLeaderError carries the leader hint.
	ErrNotLeader = errors.New("coordinator: not the leader")
	// ErrBadCommand: a command or request is malformed or invalid (names the field).
	ErrBadCommand = errors.New("coordinator: bad command")
	// ErrUnknownWorker: no worker is registered under that id.
	ErrUnknownWorker = errors.New("coordinator: unknown worker")
	// ErrStaleGeneration: the request names a plan generation older than the current one.
	ErrStaleGeneration = errors.New("coordinator: stale generation")
	// ErrNotMember: the worker is registered but not a member of the current plan.
	ErrNotMember = errors.New("coordinator: not a member of the current plan")
	// ErrNoJob: no job has been submitted.
	ErrNoJob = errors.New("coordinator: no job")
	// ErrConflict: the request contradicts committed state (another job, another
	// digest for a committed checkpoint step).
	ErrConflict = errors.New("coordinator: conflicts with committed state")
	// ErrHeldOff: the worker was removed after other members reported it lost and
	// may not register again yet (the message says for how long).
	ErrHeldOff = errors.New("coordinator: worker held off after being reported lost")
	// ErrClosed: the node or client has been closed.
	ErrClosed = errors.New("coordinator: closed")
)

// NotLeaderError is ErrNotLeader with the replica's view of who leads. LeaderID and
// LeaderAddr (the leader's gRPC address) are empty when no leader is known.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return ErrNotLeader.Error() + " (no leader known)"
	}
	return fmt.Sprintf("%s (leader %s at %q)", ErrNotLeader, e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// codeErrors maps the state machine's result codes to sentinels.
var codeErrors = map[pb.ErrorCode]error{
	pb.ErrorCode_ERROR_CODE_BAD_COMMAND:      ErrBadCommand,
	pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER:   ErrUnknownWorker,
	pb.ErrorCode_ERROR_CODE_STALE_GENERATION: ErrStaleGeneration,
	pb.ErrorCode_ERROR_CODE_NOT_MEMBER:       ErrNotMember,
	pb.ErrorCode_ERROR_CODE_NO_JOB:           ErrNoJob,
	pb.ErrorCode_ERROR_CODE_CONFLICT:         ErrConflict,
}

// ResultError returns the error a state-machine Result stands for: nil when the code
// is OK, else the code's sentinel wrapped with the result's message.
func ResultError(r *pb.Result) error {
	if r == nil || r.GetCode() == pb.ErrorCode_ERROR_CODE_OK {
		return nil
	}
	base, ok := codeErrors[r.GetCode()]
	if !ok {
		base = ErrBadCommand
	}
	return fmt.Errorf("%w: %s", base, r.GetMessage())
}

// failure builds an error Result. The message must be deterministic: it is replicated
// state (remembered for duplicate requests).
// It is cut to MaxMessageLen bytes.
func failure(code pb.ErrorCode, format string, args ...any) *pb.Result {
	return &pb.Result{Code: code, Message: truncateText(fmt.Sprintf(format, args...), MaxMessageLen)}
}
