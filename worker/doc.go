// Package worker is a ringtrain training process: it joins a coordinator cluster,
// follows its plans, and trains its share of the job with the other members, summing
// gradients with a ring all-reduce so that every member applies the same update.
//
// # Who calls it
//
// `ringtrain worker` runs one Worker per process; localcluster (`ringtrain local`,
// and the cluster tests here) runs several in one process beside an embedded
// coordinator; the other tests run them against coordinator.MakeCluster, or against
// coordinator.Inmem (the coordinator's state machine without Raft) when the test is
// not about the cluster. Nothing else in ringtrain depends on it. A worker sees the
// coordinator only through the Coordinator interface (coordinator.go), which states
// each call's contract.
//
// # Usage
//
//	cl, _ := coordinator.NewClient(addrs, coordinator.ClientOptions{Logger: log})
//	defer cl.Close()
//	w, err := worker.New(worker.Config{ID: "w0", Listen: ":7100", Advertise: "host:7100",
//		Coordinators: cl, Logger: log, Progress: os.Stdout})
//	if err != nil { ... }
//	res, err := w.Run(ctx) // until the job is done, ctx ends, or a fatal error
//
// # What Run does
//
// Run starts the peer gRPC server (the allreduce ring service and gRPC health),
// registers with the coordinator, and runs three goroutines beside the training
// loop: a heartbeat every third of the lease (registering again if the lease was
// lost), the plan watcher, and a reporter that sends progress and checkpoint
// records. The reporter keeps only the newest progress, so the training loop never
// waits for the coordinator: a coordinator fail-over costs no step time.
//
// For each plan generation in which it is a member, the worker builds the ring over
// the plan's ordered members and synchronises state (below), then steps: the
// gradient of its streams' micro-batches (coordinator.StreamsOf; each scaled by the
// global target count, so the ring's SUM is the global mean gradient), all-reduced
// bucket by bucket while backward runs, and the step summary as a last small
// operation (the local loss sum, rank 0's stopping decision, below, and every rank's
// step times, straggler.go); then clipping and AdamW (trainer.Apply). Rank 0 reports
// progress to the coordinator and keeps the job's books with the trainer's
// Bookkeeper, as the single-process trainer does: it prints the progress lines (or
// bar), writes metrics.jsonl and the TensorBoard event files under <out>/tb (with
// the step's phase times) and evaluates at the job's trainer.Cadence, and every
// checkpoint_interval steps writes a checkpoint with the trainer's writer and
// commits its digest (model.CheckpointDigest) through the coordinator. At every
// checkpoint interval and at the end all ranks compare a 64-bit checksum of their
// weights; a difference stops the job with ErrDiverged.
//
// # Steps and recovery
//
// A step is all-or-nothing on each rank: either the all-reduce completed and Apply
// ran, or the rank's weights, moments and step are those of the step before. When
// a newer plan arrives, the context of the current generation is cancelled: the
// gradient computation stops between micro-batches, the ring operation in flight
// aborts within milliseconds, and the loop takes the new plan. A ring that fails
// without a new plan (a neighbour died, its lease has not expired yet) makes the
// worker health-check the other members and report those that do not answer
// (coordinator ReportPeerLost), so that the leader removes a dead, stopped or
// cut-off member within about a second instead of a lease; the ring is retried on
// the same generation after Config.RetryDelay unless the new plan comes first. A
// worker the leader removed this way is held off for a while and registers again
// only when it can reach a member of the plan. With Config.Audit set, the worker
// writes the audit log that VerifyAudit (and `ringtrain audit`) checks.
//
// Every generation begins with a state sync. The ranks exchange their applied
// steps (an all-reduce in which each rank fills its own slot with the step as
// exact 16-bit pieces), and the lowest rank at the newest step broadcasts its
// parameters, AdamW moments and steps as one float32 buffer. A rank that was a
// step behind (its all-reduce failed where another's completed), or that has just
// joined, thus continues from the newest state, and the aborted step is recomputed
// from the same data, since a step's data is a pure function of (seed, dataset,
// stream, step). Because the survivors hold the state, durable checkpoints are
// needed only when every worker is lost: a worker that loads a job restores the newest
// checkpoint committed in the coordinator (or, when none is committed, the run
// directory's newest, as the single-process trainer does).
//
// The exchange carries each rank's weight checksum beside its step, and when all
// ranks hold the same step and weights nothing is broadcast; otherwise the whole
// state goes from the source to every rank (the broadcast is the ring's, carried
// over the peer service's links), which for the models ringtrain trains on CPUs
// is a fraction of a second on loopback.
//
// # Gradient buckets
//
// The gradient slab is cut into buckets of at least Config.BucketBytes, along the
// ranges that model.GPT.Backward reports final, in the order it finishes them (the
// last layers first); see cutBuckets. The cut depends only on the model's shape, so
// every rank starts the same ring operations in the same order, and each bucket is
// summed in the ring's fixed order: the bits do not depend on timing. A step's
// gradient is the sum over the rank's micro-batches, so only the last micro-batch's
// backward reports ranges (trainer.Trainer.Gradients): once it has added into a
// range, the range is final, and its bucket starts while backward works on the
// layers below. Buckets not started when backward returns (a rank with no streams
// reports none) start then; the step summary follows; the step waits for all of
// them before clipping.
//
// # Exact mode
//
// With the job's exact flag the buckets are spans of an int64 accumulator rather than
// of the float32 gradients: trainer.Trainer.GradientsExact converts each stream's
// gradient to fixed point on its own and adds it there, and the ring sums the
// buckets, and the step summary, as integers (allreduce.Ring.StartInt64). Integer
// addition is associative, so the sum, and after its one conversion back
// (trainer.Trainer.ExactGrads) the weights, are the same bits for any world size and
// any spread of streams over ranks; a fault that changes the world size then costs
// no bits either. A gradient outside the fixed-point range stops the job with
// trainer.ErrExactRange.
//
// # Stragglers
//
// Each rank keeps the means of its compute and ring wait over its last 20 steps
// (rankClock) and writes them into its own slots of the step summary, so rank 0
// learns every rank's and reports them with its progress (pb.RankTime); status
// names the slowest rank. Config.ComputeDelay makes a straggler on purpose.
//
// # Time split
//
// Each step's wall time is split into compute (forward and backward, less the time
// reading batches), all-reduce (blocked on the reductions after backward ended),
// optimizer (clipping and AdamW) and waiting (reading batches, the ring and state
// sync of a new generation, bookkeeping); the time the ring was busy, which
// overlaps compute, is kept beside them. Rank 0's evaluations are outside every
// step (a peer waits for them in its next all-reduce). The split goes to the
// Prometheus instruments (metrics.Worker), to metrics.jsonl, and summed into
// Result.Split.
//
// When the job's last step is done, rank 0 writes the final checkpoint and records
// the step and the checkpoint, marked final, synchronously (the job then reads
// FINISHED), all ranks meet at a barrier, and each worker leaves the cluster and
// returns its Result. A worker that finds the job FINISHED, before registering or
// when a plan gives it no work, returns at once with success; one that finds it
// FAILED returns ErrJobFailed; one that stops on a fatal error reports it first, so
// the job fails as a whole (job_end.go).
//
// # Stopping early and keeping checkpoints
//
// A job may end before its last step (max_time, target_val_loss, patience;
// trainer.Cadence.Stop). Only rank 0 evaluates, so rank 0 decides, after each step's
// books and checkpoint, and adds its decision to the next step's loss all-reduce;
// when the reduced sum says stop, no rank applies that step and every rank ends the
// job, through the same end as above, at the step rank 0 decided after: the step at
// which the single-process trainer stops. The final commit then carries the rule as
// its stop reason, and the job reads FINISHED at that step with it. With
// keep_checkpoints set, rank 0 deletes the checkpoints trainer.Retain lets go once
// the coordinator has committed a newer one, never the newest committed one or any
// newer one, nor the best by validation loss.
//
// With Config.CheckpointOnStop (ringtrain local), the worker that was rank 0 also
// writes a checkpoint of the last step it applied when Run's context ends, as the
// single-process trainer does on an interrupt.
package worker
