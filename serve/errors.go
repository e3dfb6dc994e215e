package serve

import "errors"

// Sentinel errors, wrapped with the request or value they concern.
var (
	// ErrStopped: the engine stopped (its Run returned) before or while the request
	// ran.
	ErrStopped = errors.New("serve: engine stopped")
	// ErrBadRequest: a request the model cannot run (an option out of range, a prompt
	// that does not fit the context). The message names the field.
	ErrBadRequest = errors.New("serve: bad request")
)
