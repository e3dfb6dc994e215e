package main

import "errors"

// Exit statuses of the command line.
const (
	exitFailure     = 1
	exitInterrupted = 130 // as a shell reports a process ended by SIGINT
)

// exitError is an error that asks for a particular exit status: main exits with
// exitCode(err).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the status the process exits with.
func (e *exitError) ExitCode() int { return e.code }

// exitCode is the exit status for the error a command returned: 0 for nil, the
// code of the first exitError in err's chain, else 1.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}
