// Package metrics holds the Prometheus instruments of ringtrain's processes and the
// split of a training step's wall time into phases. Every instrument is registered on
// a registry the caller passes in; nothing here touches the global default registry.
//
// # Who calls it
//
// The worker records each step on a Worker (a nil *Worker records nothing) and sums
// StepTimes into a Split it prints at the end of a run; the coordinator's command
// registers a replica's values with RegisterCoordinator (Raft, plan, progress and
// the job's lifecycle as ringtrain_job_state); cmd/ringtrain serves a
// registry with Serve at --metrics-addr.
//
// # Usage
//
//	reg := prometheus.NewRegistry()
//	m, err := metrics.NewWorker(reg, "w0")
//	if err != nil { ... }
//	addr, stop, err := metrics.Serve(ctx, ":9100", reg, log) // GET /metrics
//	defer stop()
//
// # Why the phases add up
//
// A step's phases (compute, allreduce, optimizer, waiting) cover the wall time from
// the end of the step before to the end of this one, with nothing counted twice, so
// their shares say where a step went. The time the ring was busy overlaps compute
// (gradient buckets are reduced while backward runs) and is kept beside the phases,
// not among them.
package metrics
