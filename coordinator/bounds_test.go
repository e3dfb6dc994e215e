package coordinator

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// A client that sends many commands with huge bad values cannot grow the replicated
// session table: every remembered message is at most MaxMessageLen bytes.
func TestSessionsStayBoundedUnderHugeBadValues(t *testing.T) {
	m := machineAt(t, opSubmit(testJob(), false))
	huge := strings.Repeat("x", 3<<20)
	idx := uint64(1)
	for c := range 4 {
		for r := range MaxSessionEntries {
			idx++
			var cmd *pb.Command
			switch r % 3 {
			case 0:
				cmd = opRegister(huge, "h:1")
			case 1:
				cmd = opSetReplica("c0", huge)
			default:
				cmd = opCheckpoint("w0", 1, 1, huge)
			}
			cmd.Rid = &pb.RequestID{ClientId: fmt.Sprintf("client-%d", c), RequestId: uint64(r + 1)}
			res := m.Apply(idx, enc(t, cmd))
			if res.GetCode() == pb.ErrorCode_ERROR_CODE_OK {
				t.Fatalf("command %d accepted", r)
			}
			if len(res.GetMessage()) > MaxMessageLen {
				t.Fatalf("result message of %d bytes, over %d", len(res.GetMessage()), MaxMessageLen)
			}
		}
	}
	b, err := proto.Marshal(m.State())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state after %d refused commands with 3 MiB values: %d bytes", 4*MaxSessionEntries, len(b))
	// 4 clients x 64 entries x (message <= 1 KiB + framing)
	if limit := 4 * MaxSessionEntries * (MaxMessageLen + 64); len(b) > limit+4096 {
		t.Fatalf("state of %d bytes after bad commands, want at most about %d", len(b), limit)
	}
}

func TestApplyRefusesOversizedCommand(t *testing.T) {
	m := machineAt(t)
	job := testJob()
	job.SpecJson = make([]byte, MaxCommandBytes)
	b, err := proto.Marshal(&pb.Command{Version: CommandVersion, Op: &pb.Command_SubmitJob{SubmitJob: &pb.SubmitJobOp{Job: job}}})
	if err != nil {
		t.Fatal(err)
	}
	res := m.Apply(1, b)
	if res.GetCode() != pb.ErrorCode_ERROR_CODE_BAD_COMMAND || !strings.Contains(res.GetMessage(), "exceeds") {
		t.Fatalf("result %v, want BAD_COMMAND for the size", res)
	}
	if m.State().GetJob() != nil {
		t.Fatal("oversized job was applied")
	}
}

func TestTruncateText(t *testing.T) {
	cases := []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg…"},
		{"ééééé", 6, "é…"}, // 2-byte runes: one fits before the 3-byte mark
	}
	for _, tc := range cases {
		got := truncateText(tc.in, tc.limit)
		if len(got) > tc.limit {
			t.Errorf("truncateText(%q, %d) = %q: %d bytes", tc.in, tc.limit, got, len(got))
		}
		if got != tc.want {
			t.Errorf("truncateText(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

// Replacing the job bumps the job version: the next plan is a new generation that
// names it, and a checkpoint of the old job is refused even from a current member.
func TestReplaceJobNewVersionAndGeneration(t *testing.T) {
	m := machineAt(t, opSubmit(testJob(), false), opRegister("w0", "h0:1"), opRegister("w1", "h1:1"), opReplan())
	plan := m.State().GetPlan()
	if plan.GetJobVersion() != 1 || m.State().GetJobVersion() != 1 {
		t.Fatalf("first job: plan %v state version %d, want job version 1", plan, m.State().GetJobVersion())
	}
	other := testJob()
	other.Steps = 200
	other.SpecJson = []byte(`{"steps":200}`)
	idx := uint64(5)
	apply := func(c *pb.Command) *pb.Result {
		idx++
		return m.Apply(idx, enc(t, c))
	}
	if r := apply(opSubmit(other, true)); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK {
		t.Fatal(ResultError(r))
	}
	apply(opReplan())
	next := m.State().GetPlan()
	if next.GetJobVersion() != 2 || next.GetGeneration() != plan.GetGeneration()+1 || !slicesEqual(next.GetMembers(), plan.GetMembers()) {
		t.Fatalf("plan after replace %v, want the same members in generation %d of job version 2", next, plan.GetGeneration()+1)
	}
	// A commit of the old job: stale generation, and stale job version in a current one.
	if r := apply(opCheckpoint("w0", plan.GetGeneration(), 10, digestA)); r.GetCode() != pb.ErrorCode_ERROR_CODE_STALE_GENERATION {
		t.Fatalf("old generation's commit: %v", r)
	}
	old := opCheckpoint("w0", next.GetGeneration(), 10, digestA)
	old.GetCommitCheckpoint().JobVersion = 1
	if r := apply(old); r.GetCode() != pb.ErrorCode_ERROR_CODE_CONFLICT || !strings.Contains(r.GetMessage(), "job version 1") {
		t.Fatalf("old job's commit in the new generation: %v", r)
	}
	cur := opCheckpoint("w0", next.GetGeneration(), 10, digestA)
	cur.GetCommitCheckpoint().JobVersion = 2
	if r := apply(cur); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK {
		t.Fatalf("current job's commit: %v", ResultError(r))
	}
	// The same job again changes nothing.
	apply(opSubmit(other, true))
	if v := m.State().GetJobVersion(); v != 2 {
		t.Fatalf("the same job resubmitted: job version %d, want 2", v)
	}
	if err := checkState(m.State()); err != nil {
		t.Fatal(err)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// refuseSteps is a JobPolicy that refuses jobs of more than max steps.
type refuseSteps struct{ max int64 }

var errTooLong = errors.New("too many steps")

func (p refuseSteps) Check(j *pb.JobSpec) error {
	if j.GetSteps() > p.max {
		return errTooLong
	}
	return nil
}
func (p refuseSteps) Admit(j *pb.JobSpec) (*pb.JobSpec, error) { return j, p.Check(j) }

func TestMachineRunsJobPolicy(t *testing.T) {
	m := NewMachine(refuseSteps{max: 150})
	long := testJob()
	long.Steps = 200
	if r := m.Apply(1, enc(t, opSubmit(long, false))); r.GetCode() != pb.ErrorCode_ERROR_CODE_BAD_COMMAND || !strings.Contains(r.GetMessage(), "too many steps") {
		t.Fatalf("job refused by the policy: %v", r)
	}
	if r := m.Apply(2, enc(t, opSubmit(testJob(), false))); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK {
		t.Fatal(ResultError(r))
	}
	// Restore checks the job too.
	st := m.State()
	st.Job.Steps = 200
	if err := NewMachine(refuseSteps{max: 150}).Restore(st); !errors.Is(err, ErrBadCommand) || !errors.Is(err, errTooLong) {
		t.Fatalf("restore of a state whose job the policy refuses: %v", err)
	}
	// The leader's admission.
	if _, err := admitJob(refuseSteps{max: 150}, long); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("admit: %v", err)
	}
}

// FuzzDecodeState: a snapshot of any bytes is refused with an error wrapping
// ErrBadCommand, or is a state a Machine restores, that survives a deterministic
// encode and decode, and that stays valid after the leader's next Replan and a
// command.
func FuzzDecodeState(f *testing.F) {
	for _, cmds := range [][]*pb.Command{
		nil,
		{opSubmit(testJob(), false), opRegister("w0", "h0:1"), opRegister("w1", "h1:1"), opReplan(),
			opProgress("w0", 1, 3, 1.5), opCheckpoint("w0", 1, 10, digestA)},
		{opSubmit(testJob(), false), opRegister("w0", "h0:1"), opReplan(), opSetReplica("c0", "h:7001")},
	} {
		m := machineAt(f, cmds...)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.State())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x09})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		m := NewMachine(nil)
		if err := m.Restore(st); err != nil {
			t.Fatalf("decoded state does not restore: %v", err)
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.State())
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeState(again)
		if err != nil || !proto.Equal(back, m.State()) {
			t.Fatalf("re-encoded state: %v", err)
		}
		idx := m.State().GetAppliedIndex()
		m.Apply(idx+1, enc(t, opReplan()))
		m.Apply(idx+2, enc(t, opRegister("w9", "h9:1")))
		m.Apply(idx+3, enc(t, opReplan()))
		if err := checkState(m.State()); err != nil {
			t.Fatalf("state invalid after replan: %v", err)
		}
	})
}
