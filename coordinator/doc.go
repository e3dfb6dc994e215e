// Package coordinator is ringtrain's control plane: a Raft-replicated service that
// holds the job, the registered workers, the current plan (which worker owns which
// data streams, in which ring order), the committed training progress and the
// committed checkpoints. Three or five replicas run hashicorp/raft; any minority may
// die or be cut off and the cluster keeps its state and keeps deciding.
//
// # Who calls it
//
//   - cmd/ringtrain's "coordinator" command runs one replica (Start, Node.Close), and
//     "coordinator status" prints Client.Status with every replica's health
//     (ProbeHealth).
//   - Workers use Client: Register, then Heartbeat every lease/3, WatchPlan to learn
//     each new generation, ReportProgress and CommitCheckpoint while training, Leave on
//     SIGTERM, FailJob when they stop on an error no retry can cure.
//   - Tests of this package and of the worker use the in-process Cluster harness
//     (testing.go: MakeCluster, Leader, Kill, Restart, Partition, Heal, WaitFor).
//     Worker tests that are not about the cluster use Inmem
//     (inmem_coordinator.go): one Machine and NextPlan behind Client's worker
//     calls, without Raft, with the leader's timing simplified (no settle window,
//     leases that expire only on Expire, peer-lost reports judged at once).
//
// # Usage
//
//	node, err := coordinator.Start(coordinator.Config{
//		ID: "c0", DataDir: "/var/lib/ringtrain",
//		RaftAddr: ":7000", GRPCAddr: ":7001",
//		Peers: []coordinator.Peer{{ID: "c0", Addr: "host0:7000"}, {ID: "c1", Addr: "host1:7000"}, {ID: "c2", Addr: "host2:7000"}},
//		Logger: log,
//	})
//	if err != nil { ... }
//	defer node.Close()
//
//	// On a worker:
//	cl, _ := coordinator.NewClient([]string{"host0:7001", "host1:7001", "host2:7001"}, coordinator.ClientOptions{Logger: log})
//	defer cl.Close()
//	reg, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: "w0", Address: "w0:7100", Device: "cpu"})
//	go cl.WatchPlan(ctx, "w0", 0, func(p *pb.Plan) error { /* abort the step, resync, continue */ return nil })
//
// # Layers
//
// The core is pure and deterministic. Machine (fsm.go) applies one command to the
// state: it reads no clock (a worker's joined_at is the Raft index of its Register),
// keeps every list sorted so that no map order leaks into the state, refuses invalid
// commands with an error Result instead of panicking, and remembers the results of
// recent requests per client so that a retried write is answered, not re-applied.
// NextPlan (planner.go) is a pure function from (job, workers, previous plan) to the
// next plan. Both are tested exhaustively, fuzzed and property-checked without any
// network. raftFSM adapts Machine to raft.FSM (snapshots are the protobuf encoding of
// the whole state). Node wires Raft, bbolt stores, the file snapshot store, the TCP
// transport, the leader's duties and the gRPC service; Client is the Go side of the
// API. Sentinel errors (errors.go) become gRPC codes only in grpc_errors.go, and the
// Client turns them back into the same sentinels.
//
// # Why only the leader tracks leases
//
// A heartbeat every few seconds from every worker is not worth a replicated write:
// it would fill the Raft log with entries that say nothing durable, and a lease
// deadline is a wall-clock time that a deterministic state machine must not read.
// So leases live in the leader's memory only. When one expires the leader proposes
// the worker's removal through Raft, like any other client would; the removal names
// the worker's incarnation (joined_at), so it cannot remove a worker that registered
// again meanwhile. Followers keep no lease state, so there is nothing to reconcile on
// fail-over: a new leader first catches its state machine up (a Raft barrier), then
// grants every registered worker a fresh full lease, and only then answers
// heartbeats. A worker can therefore lose at most one lease period to a fail-over,
// never be removed by it; the price is that a worker that died just before a
// fail-over is noticed one lease later.
//
// # How generations form
//
// Every change the plan must reflect (a worker registers, changes address, leaves or
// expires; a job is submitted) bumps the state's membership_epoch. The leader watches
// the state; when the epoch differs from the one the current plan was made for it
// opens a settle window (Config.Settle, 500 ms by default), and when the window
// closes it proposes one Replan command. The state machine then computes the plan
// from the state as it is at that point of the log, so every change within the window
// lands in one new generation, and replicas agree on it because they compute it from
// the same log. If the result assigns the same work to the same workers (a worker
// re-registered unchanged) no generation is created. Generations only grow; workers
// tag their ring messages and reports with theirs, and a report from an older
// generation fails with ErrStaleGeneration. Below min_workers the plan is a WAITING
// generation with no members and a reason; above max_workers the extra workers are
// standby, promoted when a member goes. Streams are spread evenly and moved as
// little as possible, and surviving members keep their relative rank order. Once
// the job has ended (job_lifecycle.go: FINISHED when its final step and that step's
// checkpoint are committed, the final step being the job's last or, by the final
// mark of the commit, the one a stopping rule ended it at; FAILED on a worker's
// FailJob) every plan is ENDED: no
// members, every worker on standby, the reason saying how the job ended.
//
// # Storage and addressing
//
// Raft's log and stable store are one bbolt file (raft-boltdb), snapshots are files
// beside it; a restart of every replica on the same directories recovers every
// committed entry. Replica ids are stable names. The Raft configuration holds the
// addresses as given (host names are kept, not resolved), and the transport resolves
// them on every dial, so a pod that returns with a new IP behind the same DNS name
// is reached again. A cluster is bootstrapped from a static peer list (every peer
// may bootstrap with the same configuration; only a replica without state does) or
// grown by joining a running replica through the AddVoter RPC.
//
// # Reads and writes
//
// Writes go to the leader; a follower answers with a leader hint (its gRPC address,
// recorded in the state when a replica takes office or joins) and the Client follows
// it. Status is linearizable by default: the leader confirms it still leads with a
// Raft barrier before reading. WatchPlan is served by the leader and ends when it
// loses leadership; the Client reconnects and never delivers a generation twice.
package coordinator
