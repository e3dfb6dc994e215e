// Package localcluster runs a whole ringtrain cluster inside one process: embedded
// coordinator replicas (Raft over loopback TCP), a submitted job, and N workers that
// train it and all-reduce their gradients over loopback gRPC, exactly as separate
// `ringtrain coordinator` and `ringtrain worker` processes do. Every connection is
// mutual TLS: Run makes a CA in memory and issues each replica, worker and the
// submitting client its certificate (Options.PlainText turns it off), so the
// secure path is the one every local run exercises.
//
// # Who calls it
//
// `ringtrain local`, which adds the shipped corpus, flags, metrics serving and the
// summary lines; the worker's cluster tests (worker/cluster_test.go), which compare
// what N workers train with the single-process trainer; and anyone who wants a
// distributed run without starting processes (see the example).
//
// # Usage
//
//	res, err := localcluster.Run(ctx, localcluster.Options{
//		Spec:    spec,                                              // the job
//		Workers: 2, Coordinators: 1, Dir: "ringtrain-local",        // Raft state in a fresh directory under Dir
//		Replica: coordinator.Config{Settle: 100 * time.Millisecond}, // template of every replica
//		Worker:  worker.Config{Logger: log, Progress: os.Stdout},    // template of every worker
//	})
//	if err != nil { ... }
//	fmt.Println(res.Workers[0].Checkpoint) // rank 0's last checkpoint
//
// Run returns when every worker has finished the job (or failed, or ctx ended), after
// stopping the workers and the replicas; nothing outlives it but the job's output
// directory and metrics registered on Options.Registry.
//
// # Why templates
//
// A replica and a worker each have a dozen settings; a cluster in one process differs
// from separate processes only in the few that name one member (ids, addresses, data
// directories, the coordinator client, the certificates). Options therefore carries one
// coordinator.Config, one coordinator.ClientOptions and one worker.Config that every
// member starts from, Run fills in the per-member fields, and a test or a command sets
// timing, logging and buckets with the packages' own field names and defaults.
package localcluster
