package coordinator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

const digestA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const digestB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func testJob() *pb.JobSpec {
	return &pb.JobSpec{SpecJson: []byte(`{"steps":100}`), Streams: 4, MinWorkers: 1, MaxWorkers: 0, Steps: 100, CheckpointInterval: 10}
}

func enc(t testing.TB, c *pb.Command) []byte {
	t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func opSubmit(j *pb.JobSpec, replace bool) *pb.Command {
	return &pb.Command{Op: &pb.Command_SubmitJob{SubmitJob: &pb.SubmitJobOp{Job: j, Replace: replace}}}
}
func opRegister(id, addr string) *pb.Command {
	return &pb.Command{Op: &pb.Command_Register{Register: &pb.RegisterOp{WorkerId: id, Address: addr, Device: "cpu"}}}
}
func opRemove(id string, joinedAt uint64, mustExist bool) *pb.Command {
	return &pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{WorkerId: id, JoinedAt: joinedAt, MustExist: mustExist}}}
}
func opReplan() *pb.Command { return &pb.Command{Op: &pb.Command_Replan{Replan: &pb.ReplanOp{}}} }
func opProgress(id string, gen uint64, step int64, loss float64) *pb.Command {
	return &pb.Command{Op: &pb.Command_ReportProgress{ReportProgress: &pb.ReportProgressOp{WorkerId: id, Generation: gen, Step: step, Loss: loss, Tokens: step * 100}}}
}
func opCheckpoint(id string, gen uint64, step int64, sha string) *pb.Command {
	return &pb.Command{Op: &pb.Command_CommitCheckpoint{CommitCheckpoint: &pb.CommitCheckpointOp{WorkerId: id, Generation: gen, Step: step, Location: fmt.Sprintf("ckpt/step-%d", step), Sha256: sha}}}
}
func opSetReplica(id, addr string) *pb.Command {
	return &pb.Command{Op: &pb.Command_SetReplica{SetReplica: &pb.SetReplicaOp{Id: id, GrpcAddr: addr}}}
}

// machineAt applies cmds in order from index 1 and fails on any error.
func machineAt(t testing.TB, cmds ...*pb.Command) *Machine {
	t.Helper()
	m := NewMachine(nil)
	for i, c := range cmds {
		if r := m.Apply(uint64(i+1), enc(t, c)); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK {
			t.Fatalf("setup command %d: %v", i, ResultError(r))
		}
	}
	return m
}

func TestMachineCommands(t *testing.T) {
	// A running job: w0, w1 members of generation 1.
	base := []*pb.Command{opSubmit(testJob(), false), opRegister("w0", "h0:1"), opRegister("w1", "h1:1"), opReplan()}
	bigJob := testJob()
	bigJob.Streams = 8
	cases := []struct {
		name string
		cmd  *pb.Command
		raw  []byte // used instead of cmd when set
		want pb.ErrorCode
		msg  string // substring of the message
	}{
		{"garbage bytes", nil, []byte{0xff, 0xff, 0xff}, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "decode"},
		{"wrong version", nil, func() []byte { b, _ := proto.Marshal(&pb.Command{Version: 9, Op: opReplan().Op}); return b }(), pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "version 9"},
		{"no op", &pb.Command{}, nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "no operation"},
		{"rid without client", &pb.Command{Rid: &pb.RequestID{RequestId: 1}, Op: opReplan().Op}, nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "client_id"},
		{"same job again", opSubmit(testJob(), false), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"other job", opSubmit(bigJob, false), nil, pb.ErrorCode_ERROR_CODE_CONFLICT, "replace"},
		{"other job replace", opSubmit(bigJob, true), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"job streams 0", opSubmit(&pb.JobSpec{Streams: 0, Steps: 1}, true), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "job.streams"},
		{"job min > streams", opSubmit(&pb.JobSpec{Streams: 2, MinWorkers: 3, Steps: 1}, true), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "job.min_workers"},
		{"job min > max", opSubmit(&pb.JobSpec{Streams: 4, MinWorkers: 3, MaxWorkers: 2, Steps: 1}, true), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "job.min_workers"},
		{"job steps 0", opSubmit(&pb.JobSpec{Streams: 4, Steps: 0}, true), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "job.steps"},
		{"job missing", opSubmit(nil, true), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "job"},
		{"register empty id", opRegister("", "h:1"), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "worker_id"},
		{"register long id", opRegister(strings.Repeat("x", 200), "h:1"), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "worker_id"},
		{"register control char", opRegister("w\n", "h:1"), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "control"},
		{"register no address", opRegister("w9", ""), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "address"},
		{"register again", opRegister("w0", "h0:1"), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"leave unknown", opRemove("nobody", 0, true), nil, pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER, "nobody"},
		{"expire unknown", opRemove("nobody", 0, false), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"progress", opProgress("w0", 1, 5, 2.5), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"progress unknown worker", opProgress("w9", 1, 5, 2.5), nil, pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER, "w9"},
		{"progress stale generation", opProgress("w0", 0, 5, 2.5), nil, pb.ErrorCode_ERROR_CODE_STALE_GENERATION, "generation 0"},
		{"progress future generation", opProgress("w0", 7, 5, 2.5), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "generation"},
		{"progress NaN loss", opProgress("w0", 1, 5, nan()), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "loss"},
		{"progress negative step", opProgress("w0", 1, -1, 1), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "step"},
		{"checkpoint", opCheckpoint("w1", 1, 10, digestA), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"checkpoint bad digest", opCheckpoint("w1", 1, 10, "XYZ"), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "sha256"},
		{"checkpoint uppercase digest", opCheckpoint("w1", 1, 10, strings.ToUpper(digestA)), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "sha256"},
		{"checkpoint stale", opCheckpoint("w1", 0, 10, digestA), nil, pb.ErrorCode_ERROR_CODE_STALE_GENERATION, ""},
		{"set replica", opSetReplica("c0", "h:7001"), nil, pb.ErrorCode_ERROR_CODE_OK, ""},
		{"set replica no addr", opSetReplica("c0", ""), nil, pb.ErrorCode_ERROR_CODE_BAD_COMMAND, "grpc_addr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := machineAt(t, base...)
			before := m.State()
			data := tc.raw
			if data == nil {
				data = enc(t, tc.cmd)
			}
			r := m.Apply(uint64(len(base)+1), data)
			if r.GetCode() != tc.want || !strings.Contains(r.GetMessage(), tc.msg) {
				t.Fatalf("got %v %q, want %v containing %q", r.GetCode(), r.GetMessage(), tc.want, tc.msg)
			}
			if tc.want != pb.ErrorCode_ERROR_CODE_OK {
				before.AppliedIndex = m.State().AppliedIndex
				if !proto.Equal(before, m.State()) {
					t.Fatalf("a refused command changed the state")
				}
			}
		})
	}
}

func nan() float64 { return math.NaN() }

func TestMachineNotMember(t *testing.T) {
	job := testJob()
	job.MaxWorkers = 1
	m := machineAt(t, opSubmit(job, false), opRegister("w0", "h0:1"), opRegister("w1", "h1:1"), opReplan())
	st := m.State()
	if got := st.GetPlan().GetStandby(); len(got) != 1 || got[0] != "w1" {
		t.Fatalf("standby %v, want [w1]", got)
	}
	r := m.Apply(10, enc(t, opProgress("w1", 1, 3, 1)))
	if r.GetCode() != pb.ErrorCode_ERROR_CODE_NOT_MEMBER {
		t.Fatalf("standby worker's report: %v", ResultError(r))
	}
}

func TestMachineProgressAndCheckpoints(t *testing.T) {
	m := machineAt(t, opSubmit(testJob(), false), opRegister("w0", "h0:1"), opReplan())
	idx := uint64(10)
	apply := func(c *pb.Command) *pb.Result { idx++; return m.Apply(idx, enc(t, c)) }
	apply(opProgress("w0", 1, 7, 3.0))
	if r := apply(opProgress("w0", 1, 5, 9.0)); r.GetProgress().GetStep() != 7 || r.GetProgress().GetLoss() != 3.0 {
		t.Fatalf("older report changed progress: %v", r.GetProgress())
	}
	if r := apply(opCheckpoint("w0", 1, 10, digestA)); r.GetCode() != 0 {
		t.Fatal(ResultError(r))
	}
	if r := apply(opCheckpoint("w0", 1, 10, digestA)); r.GetCode() != 0 {
		t.Fatalf("same checkpoint again: %v", ResultError(r))
	}
	if r := apply(opCheckpoint("w0", 1, 10, digestB)); r.GetCode() != pb.ErrorCode_ERROR_CODE_CONFLICT {
		t.Fatalf("other digest for a committed step: %v", ResultError(r))
	}
	for s := int64(20); s < 20+10*MaxCheckpoints; s += 10 {
		if r := apply(opCheckpoint("w0", 1, s, digestB)); r.GetCode() != 0 {
			t.Fatal(ResultError(r))
		}
	}
	cks := m.State().GetCheckpoints()
	if len(cks) != MaxCheckpoints || cks[len(cks)-1].GetStep() != 10+10*MaxCheckpoints || cks[0].GetStep() != 20 {
		t.Fatalf("kept %d checkpoints from %d to %d", len(cks), cks[0].GetStep(), cks[len(cks)-1].GetStep())
	}
	// Replacing the job drops its progress and checkpoints.
	j := testJob()
	j.Steps = 5
	apply(opSubmit(j, true))
	if st := m.State(); st.Progress != nil || len(st.Checkpoints) != 0 {
		t.Fatalf("replaced job kept progress %v / %d checkpoints", st.Progress, len(st.Checkpoints))
	}
}

func TestMachineRemoveIncarnation(t *testing.T) {
	m := machineAt(t, opRegister("w0", "h0:1")) // joined_at 1
	// The worker left and registered again (joined_at 3); a lease expiry proposed for
	// the first incarnation must not remove the second.
	m.Apply(2, enc(t, opRemove("w0", 1, true)))
	m.Apply(3, enc(t, opRegister("w0", "h0:2")))
	m.Apply(4, enc(t, opRemove("w0", 1, false)))
	if ws := m.State().GetWorkers(); len(ws) != 1 || ws[0].GetJoinedAt() != 3 {
		t.Fatalf("workers %v", ws)
	}
	m.Apply(5, enc(t, opRemove("w0", 3, false)))
	if ws := m.State().GetWorkers(); len(ws) != 0 {
		t.Fatalf("workers %v", ws)
	}
}

func TestMachineDeduplicates(t *testing.T) {
	m := NewMachine(nil)
	rid := &pb.RequestID{ClientId: "client-a", RequestId: 1}
	c := opRegister("w0", "h0:1")
	c.Rid = rid
	r1 := m.Apply(1, enc(t, c))
	epoch := m.State().GetMembershipEpoch()
	// The same request id with another payload (a buggy client) still answers the
	// first result and applies nothing.
	c2 := opRegister("w0", "h0:2")
	c2.Rid = rid
	r2 := m.Apply(2, enc(t, c2))
	if !proto.Equal(r1, r2) {
		t.Fatalf("duplicate answered %v, first %v", r2, r1)
	}
	if st := m.State(); st.GetMembershipEpoch() != epoch || st.GetWorkers()[0].GetAddress() != "h0:1" {
		t.Fatalf("duplicate was applied: %v", st.GetWorkers())
	}
	// Errors are remembered too.
	bad := opRemove("nobody", 0, true)
	bad.Rid = &pb.RequestID{ClientId: "client-a", RequestId: 2}
	e1 := m.Apply(3, enc(t, bad))
	m.Apply(4, enc(t, opRegister("nobody", "h:1")))
	if e2 := m.Apply(5, enc(t, bad)); !proto.Equal(e1, e2) || e2.GetCode() != pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER {
		t.Fatalf("duplicate of a failed request: %v, first %v", e2, e1)
	}
}

func TestMachineSessionBounds(t *testing.T) {
	m := NewMachine(nil)
	idx := uint64(0)
	for c := range MaxSessions + 10 {
		for r := range 3 {
			idx++
			cmd := opSetReplica("c0", fmt.Sprintf("h:%d", idx))
			cmd.Rid = &pb.RequestID{ClientId: fmt.Sprintf("client-%05d", c), RequestId: uint64(r + 1)}
			m.Apply(idx, enc(t, cmd))
		}
	}
	for r := range MaxSessionEntries + 5 {
		idx++
		cmd := opSetReplica("c0", "h:1")
		cmd.Rid = &pb.RequestID{ClientId: "client-busy", RequestId: uint64(r + 1)}
		m.Apply(idx, enc(t, cmd))
	}
	st := m.State()
	if len(st.Sessions) != MaxSessions {
		t.Fatalf("%d sessions, want %d", len(st.Sessions), MaxSessions)
	}
	if _, found := m.findSession("client-00000"); found {
		t.Fatalf("the oldest client was not forgotten")
	}
	i, found := m.findSession("client-busy")
	if !found || len(st.Sessions[i].Entries) != MaxSessionEntries || st.Sessions[i].Entries[0].GetRequestId() != 6 {
		t.Fatalf("busy client's session: found %v, %d entries", found, len(st.Sessions[i].GetEntries()))
	}
	if err := checkState(st); err != nil {
		t.Fatal(err)
	}
}

// randomCommands returns a mixed sequence of valid and invalid commands.
func randomCommands(rng *rand.Rand, n int) []*pb.Command {
	var cmds []*pb.Command
	gen := uint64(0)
	for range n {
		w := fmt.Sprintf("w%d", rng.IntN(6))
		var c *pb.Command
		switch rng.IntN(9) {
		case 0:
			j := testJob()
			j.Streams = int32(1 + rng.IntN(8))
			j.MinWorkers = int32(rng.IntN(int(j.Streams) + 1))
			c = opSubmit(j, rng.IntN(4) == 0)
		case 1, 2:
			c = opRegister(w, fmt.Sprintf("h%d:%d", rng.IntN(3), rng.IntN(3)))
		case 3:
			c = opRemove(w, uint64(rng.IntN(3)), rng.IntN(2) == 0)
		case 4, 5:
			c = opReplan()
			gen++
		case 6:
			c = opProgress(w, uint64(rng.IntN(int(gen)+2)), int64(rng.IntN(100)), rng.Float64())
		case 7:
			c = opCheckpoint(w, uint64(rng.IntN(int(gen)+2)), int64(10*rng.IntN(10)), []string{digestA, digestB}[rng.IntN(2)])
		case 8:
			c = opSetReplica(fmt.Sprintf("c%d", rng.IntN(3)), fmt.Sprintf("h:%d", rng.IntN(9)))
		}
		if rng.IntN(3) == 0 {
			c.Rid = &pb.RequestID{ClientId: fmt.Sprintf("cl%d", rng.IntN(3)), RequestId: uint64(1 + rng.IntN(20))}
		}
		cmds = append(cmds, c)
	}
	return cmds
}

func TestMachineDeterministicAndSnapshotRoundTrip(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cmds := randomCommands(rng, 200)
		a, b := NewMachine(nil), NewMachine(nil)
		f := newRaftFSM(nil)
		half := len(cmds) / 2
		for i, c := range cmds {
			data := enc(t, c)
			ra, rb := a.Apply(uint64(i+1), data), b.Apply(uint64(i+1), data)
			if !proto.Equal(ra, rb) {
				t.Fatalf("seed %d command %d: results differ: %v vs %v", seed, i, ra, rb)
			}
			if i == half {
				// Snapshot a through the Raft FSM encoding, restore into f, continue.
				src := &raftFSM{m: a, changes: make(chan struct{})}
				snap, err := src.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Restore(readCloser(snap.(fsmSnapshot))); err != nil {
					t.Fatalf("seed %d: restore: %v", seed, err)
				}
				if !proto.Equal(f.state(), a.State()) {
					t.Fatalf("seed %d: restored state differs", seed)
				}
			}
			if i > half {
				rf := f.m.Apply(uint64(i+1), data)
				if !proto.Equal(ra, rf) {
					t.Fatalf("seed %d command %d: restored machine answered %v, want %v", seed, i, rf, ra)
				}
			}
		}
		ea, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a.State())
		eb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(b.State())
		if string(ea) != string(eb) || !proto.Equal(a.State(), f.state()) {
			t.Fatalf("seed %d: replicas diverged", seed)
		}
		if err := checkState(a.State()); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

func TestRestoreRejectsCorruptState(t *testing.T) {
	f := newRaftFSM(nil)
	for name, b := range map[string][]byte{
		"garbage":     {0xff, 0x01, 0x02},
		"bad version": func() []byte { b, _ := proto.Marshal(&pb.CoordinatorState{Version: 42}); return b }(),
		"unsorted": func() []byte {
			b, _ := proto.Marshal(&pb.CoordinatorState{Version: StateVersion, Workers: []*pb.Worker{{Id: "b"}, {Id: "a"}}})
			return b
		}(),
		"plan owner not member": func() []byte {
			b, _ := proto.Marshal(&pb.CoordinatorState{Version: StateVersion, Plan: &pb.Plan{StreamOwner: []string{"x"}}})
			return b
		}(),
	} {
		if err := f.Restore(readCloser(b)); err == nil {
			t.Errorf("%s: restore succeeded", name)
		}
	}
}

// FuzzApply feeds arbitrary bytes to a machine that holds a running job: Apply must
// not panic, and the state must stay valid and survive a snapshot round trip.
func FuzzApply(f *testing.F) {
	for _, c := range randomCommands(rand.New(rand.NewPCG(1, 2)), 40) {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	for _, c := range []*pb.Command{opFinal("w0", 1, 10, digestA, "patience"), opFinal("w0", 1, 20, digestB, "max_time"), opFinal("w0", 1, 100, digestA, "")} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01, 0x52, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := machineAt(t, opSubmit(testJob(), false), opRegister("w0", "h0:1"), opRegister("w1", "h1:1"), opReplan(),
			opProgress("w0", 1, 3, 1.5), opCheckpoint("w0", 1, 10, digestA))
		m.Apply(100, data)
		m.Apply(101, enc(t, opReplan()))
		st := m.State()
		if err := checkState(st); err != nil {
			t.Fatalf("state invalid after %x: %v", data, err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeState(b)
		if err != nil || !proto.Equal(back, st) {
			t.Fatalf("snapshot round trip: %v", err)
		}
	})
}

// TestMachineRegisterZone: the zone travels in the registration into the worker's
// record and the plan, a registration that changes it is a membership change, and
// an oversized one is refused naming the field.
func TestMachineRegisterZone(t *testing.T) {
	reg := func(id, zone string) *pb.Command {
		return &pb.Command{Op: &pb.Command_Register{Register: &pb.RegisterOp{WorkerId: id, Address: id + ":1", Device: "cpu", Zone: zone}}}
	}
	m := machineAt(t, opSubmit(testJob(), false),
		reg("w0", "eu-a"), reg("w1", "eu-b"), reg("w2", "eu-a"), opReplan())
	if got := m.State().GetPlan().GetMembers(); !slices.Equal(got, []string{"w0", "w2", "w1"}) {
		t.Fatalf("members %v, want the zones grouped", got)
	}
	if z := m.State().GetPlan().GetWorkers()[1].GetZone(); z != "eu-a" {
		t.Fatalf("plan's w2 has zone %q", z)
	}
	epoch := m.State().GetMembershipEpoch()
	if r := m.Apply(5, enc(t, reg("w1", "eu-b"))); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK || m.State().GetMembershipEpoch() != epoch {
		t.Fatalf("same registration: %v, epoch %d -> %d", ResultError(r), epoch, m.State().GetMembershipEpoch())
	}
	if r := m.Apply(6, enc(t, reg("w1", "eu-a"))); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK || m.State().GetMembershipEpoch() != epoch+1 {
		t.Fatalf("zone change: %v, epoch %d -> %d", ResultError(r), epoch, m.State().GetMembershipEpoch())
	}
	r := m.Apply(7, enc(t, reg("w3", strings.Repeat("z", 1000))))
	if r.GetCode() == pb.ErrorCode_ERROR_CODE_OK || !strings.Contains(ResultError(r).Error(), "zone") {
		t.Fatalf("oversized zone: %v", ResultError(r))
	}
}
