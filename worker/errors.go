package worker

import (
	"errors"
	"math"
)

// The worker's sentinel errors, wrapped with %w and context.
var (
	// ErrBadConfig reports an invalid Config; the message names the field.
	ErrBadConfig = errors.New("worker: invalid configuration")
	// ErrDiverged reports replicas whose weights differ at the same step: the job
	// stops rather than train on silently diverged replicas.
	ErrDiverged = errors.New("worker: replicas diverged")
	// ErrNoState reports a generation in which no member holds the job's state.
	ErrNoState = errors.New("worker: no member has the job's state")
	// ErrJobFailed reports a job the coordinator records as FAILED (the message
	// has the reason and the worker that reported it): Run returns it at once.
	ErrJobFailed = errors.New("worker: the job failed")
)

// fatalError marks an error that no new generation can cure (a bad job, diverged
// replicas, a diverged loss): Run returns it instead of waiting for the next plan.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err}
}

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func mathFloat32bits(v float32) uint32 { return math.Float32bits(v) }
