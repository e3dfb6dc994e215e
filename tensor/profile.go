package tensor

import "time"

// OpTime is the time a backend spent in one kind of op since its profile was reset.
type OpTime struct {
	Op    string
	Calls int
	Total time.Duration
}

// Profiler is a backend that can time its ops (the cuda backend with
// RINGTRAIN_CUDA_PROFILE=1). Timing waits for each op, so a profiled run is slower than
// an unprofiled one; the split between ops is what it is for.
type Profiler interface {
	// Profiling reports whether ops are being timed.
	Profiling() bool
	// ResetProfile forgets the times so far.
	ResetProfile()
	// Profile returns the time of each kind of op, the longest first.
	Profile() []OpTime
}
