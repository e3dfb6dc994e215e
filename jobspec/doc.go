// Package jobspec converts between the trainer's job description (trainer.Spec) and
// the control plane's (ringtrain.v1.JobSpec): the whole spec travels as JSON in
// JobSpec.spec_json, beside the few fields the coordinator acts on (streams, steps,
// checkpoint interval) and the worker bounds.
//
// # Who calls it
//
// `ringtrain submit` and `ringtrain local` encode a spec into the job they submit;
// workers decode the job they read from the coordinator; tests that submit jobs to a
// coordinator.Cluster encode theirs.
//
// # Usage
//
//	job, err := jobspec.Encode(spec, minWorkers, maxWorkers) // validated as the coordinator will
//	err = cl.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job})
//
//	// on a worker:
//	spec, err := jobspec.Decode(st.GetState().GetJob())
//
//	// on a coordinator (cmd/ringtrain's --max-params, --max-activation-bytes, --data-root):
//	cfg.Jobs = jobspec.Policy{Limits: model.DefaultLimits, DataRoot: "/data"}
//
// Policy is the coordinator.JobPolicy: Check is the pure check the state machine
// runs in Apply and Restore, Admit the leader's check before a job is proposed, which
// also confines the job's paths under the data root (docs/limits.md).
//
// # Why a package of its own
//
// The coordinator never looks inside spec_json: it plans streams and counts steps
// from the job's own fields. Keeping the conversion here, outside the coordinator,
// keeps the control plane free of the training engine (trainer, model, tensor and the
// rest), so that it builds, tests and runs without them. The conversion still checks a
// job with coordinator.ValidateJob, and its errors wrap coordinator.ErrBadCommand, so
// that a bad spec is refused before it is sent, with the coordinator's own message.
package jobspec
