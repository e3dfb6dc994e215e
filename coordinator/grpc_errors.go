package coordinator

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorDomain is the google.rpc.ErrorInfo domain of the coordinator's errors.
const errorDomain = "ringtrain.coordinator"

// ErrorInfo reasons, one per sentinel (see coordinator.proto).
var sentinelReasons = []struct {
	err    error
	reason string
	code   codes.Code
}{
	{ErrNotLeader, "NOT_LEADER", codes.FailedPrecondition},
	{ErrBadCommand, "BAD_REQUEST", codes.InvalidArgument},
	{ErrUnknownWorker, "UNKNOWN_WORKER", codes.NotFound},
	{ErrStaleGeneration, "STALE_GENERATION", codes.FailedPrecondition},
	{ErrNotMember, "NOT_MEMBER", codes.FailedPrecondition},
	{ErrNoJob, "NO_JOB", codes.FailedPrecondition},
	{ErrConflict, "CONFLICT", codes.AlreadyExists},
	{ErrHeldOff, "HELD_OFF", codes.FailedPrecondition},
	{ErrClosed, "CLOSED", codes.Unavailable},
}

// toStatus translates an error of the node into a gRPC status error. This is the
// only place sentinels become codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	for _, s := range sentinelReasons {
		if !errors.Is(err, s.err) {
			continue
		}
		code := s.code
		info := &errdetails.ErrorInfo{Domain: errorDomain, Reason: s.reason}
		var nl *NotLeaderError
		if errors.As(err, &nl) {
			info.Metadata = map[string]string{"leader_id": nl.LeaderID, "leader_addr": nl.LeaderAddr}
			if nl.LeaderID == "" {
				code = codes.Unavailable
			}
		}
		st, derr := status.New(code, err.Error()).WithDetails(info)
		if derr != nil {
			return status.Error(code, err.Error())
		}
		return st.Err()
	}
	return status.Error(codes.Unavailable, err.Error())
}

// fromStatus translates a gRPC error back into the sentinel it stands for (wrapped
// with the server's message); a NOT_LEADER error becomes a *NotLeaderError. Errors
// without coordinator details are returned as they are.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != errorDomain {
			continue
		}
		if info.GetReason() == "NOT_LEADER" {
			return &NotLeaderError{LeaderID: info.GetMetadata()["leader_id"], LeaderAddr: info.GetMetadata()["leader_addr"]}
		}
		for _, s := range sentinelReasons {
			if s.reason == info.GetReason() {
				return fmt.Errorf("%w (%s)", s.err, st.Message())
			}
		}
	}
	return err
}
