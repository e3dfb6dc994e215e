package allreduce

import "errors"

// Sentinel errors of the allreduce package. Every error an operation returns
// wraps one of these (or a context error) with %w and names the generation, the
// operation and the peer involved, so callers test the kind with errors.Is and
// show the message as is. After any of them the Ring that returned it is
// unusable: every later operation on it fails at once with ErrRingFailed joined
// to the first error, and the caller builds a new Ring for a new generation.
var (
	// ErrPeerLost reports a neighbour that went away: its connection or stream
	// was closed or reset, its process died, or it closed its end of the ring
	// because its own operation failed (failures travel round the ring this way).
	ErrPeerLost = errors.New("allreduce: peer lost")
	// ErrStaleGeneration reports a message or a link from another generation of
	// the ring than the receiver's: it is refused, never mixed in.
	ErrStaleGeneration = errors.New("allreduce: stale generation")
	// ErrTimeout reports a neighbour from which nothing (neither data nor a
	// heartbeat) arrived within the progress timeout.
	ErrTimeout = errors.New("allreduce: no progress within the timeout")
	// ErrProtocol reports a frame that breaks the protocol: malformed, oversized
	// or of the wrong size, of another operation, step or segment than expected,
	// or a frame the sender says it sent that never arrived.
	ErrProtocol = errors.New("allreduce: protocol violation")
	// ErrClosed reports an operation on, or interrupted by the closing of, a Ring
	// or Transport that has been closed.
	ErrClosed = errors.New("allreduce: closed")
	// ErrRingFailed reports an operation on a Ring whose earlier operation
	// failed; the error also wraps that first failure.
	ErrRingFailed = errors.New("allreduce: ring failed earlier")
	// ErrOverflow reports an integer all-reduce (Ring.StartInt64) whose sum
	// left the int64 range: a caller broke the bound its values must keep
	// (see StartInt64). The sum is never wrapped silently.
	ErrOverflow = errors.New("allreduce: int64 sum overflows")
	// ErrBadConfig reports an invalid configuration or argument; the message
	// names the field and its value.
	ErrBadConfig = errors.New("allreduce: invalid configuration")
)
