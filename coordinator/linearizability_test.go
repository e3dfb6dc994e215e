package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// The linearizability model: registered workers (id -> address), the committed step
// and the committed checkpoints (step -> sha256), each kept as a canonical string so
// that states compare with ==.
type linState struct {
	workers string // "id=addr;" sorted by id
	step    int64
	ckpts   string // "step=sha;" sorted by step
}

type linKind int

const (
	linRegister linKind = iota
	linProgress
	linCheckpoint
	linStatus
)

type linInput struct {
	kind linKind
	id   string // worker (register)
	addr string
	step int64 // progress or checkpoint step
	sha  string
}

type linOutput struct {
	ambiguous bool  // the call failed without a definite answer: it may or may not have applied
	step      int64 // progress: committed step returned; status: committed step
	workers   string
	ckpts     string
}

func canonWorkers(ws []*pb.Worker) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "%s=%s;", w.GetId(), w.GetAddress())
	}
	return b.String()
}

func canonCheckpoints(cs []*pb.Checkpoint) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%d=%s;", c.GetStep(), c.GetSha256())
	}
	return b.String()
}

// setEntry sets key=val in a canonical "k=v;" string ordered by less.
func setEntry(s, key, val string, less func(a, b string) bool) (string, string) {
	var keys []string
	m := map[string]string{}
	for e := range strings.SplitSeq(s, ";") {
		if k, v, ok := strings.Cut(e, "="); ok {
			m[k] = v
			keys = append(keys, k)
		}
	}
	old := m[key]
	if _, ok := m[key]; !ok {
		keys = append(keys, key)
	}
	m[key] = val
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s;", k, m[k])
	}
	return b.String(), old
}

func byString(a, b string) bool { return a < b }
func byNumber(a, b string) bool {
	return len(a) < len(b) || len(a) == len(b) && a < b
}

var linModel = porcupine.Model{
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(linState), input.(linInput), output.(linOutput)
		switch in.kind {
		case linRegister:
			s.workers, _ = setEntry(s.workers, in.id, in.addr, byString)
			return true, s
		case linProgress:
			next := max(s.step, in.step)
			if !out.ambiguous && out.step != next {
				return false, s
			}
			s.step = next
			return true, s
		case linCheckpoint:
			var old string
			s.ckpts, old = setEntry(s.ckpts, fmt.Sprint(in.step), in.sha, byNumber)
			// A success for a step committed with another digest is wrong; an
			// ambiguous call may simply have been refused.
			if old != "" && old != in.sha {
				return out.ambiguous, state
			}
			return true, s
		case linStatus:
			return out.workers == s.workers && out.step == s.step && out.ckpts == s.ckpts, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		switch in.kind {
		case linRegister:
			return fmt.Sprintf("register(%s, %s) ambiguous=%v", in.id, in.addr, out.ambiguous)
		case linProgress:
			return fmt.Sprintf("progress(%d) -> %d ambiguous=%v", in.step, out.step, out.ambiguous)
		case linCheckpoint:
			return fmt.Sprintf("checkpoint(%d, %.6s) ambiguous=%v", in.step, in.sha, out.ambiguous)
		default:
			return fmt.Sprintf("status -> step %d workers %s ckpts %s", out.step, out.workers, out.ckpts)
		}
	},
}

// definite reports whether err is an answer of the state machine, so the call
// certainly did not apply (a retried request is answered with its first result).
func definite(err error) bool {
	for _, s := range []error{ErrBadCommand, ErrUnknownWorker, ErrStaleGeneration, ErrNotMember, ErrNoJob, ErrConflict} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestLinearizable runs concurrent clients (Register, ReportProgress,
// CommitCheckpoint, Status) while replicas are killed, restarted and partitioned,
// records the history and checks it with porcupine. A final Status after healing is
// part of the history, so nothing acknowledged may be missing from it.
func TestLinearizable(t *testing.T) {
	c := MakeCluster(t, 3, func(cfg *Config) { cfg.Lease = time.Minute }) // no lease expiries: the model has none
	setup := c.Client()
	c.Leader()
	ctx := c.Ctx(60 * time.Second)
	if err := setup.SubmitJob(ctx, &pb.SubmitJobRequest{Job: &pb.JobSpec{Streams: 1, MinWorkers: 1, MaxWorkers: 1, Steps: 1000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Register(ctx, &pb.RegisterRequest{WorkerId: "m", Address: "m:1"}); err != nil {
		t.Fatal(err)
	}
	c.WaitPlan("m to be the member", func(p *pb.Plan) bool { return RankOf(p, "m") == 0 })

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var mu sync.Mutex
	history := []porcupine.Operation{{
		ClientId: 0, Input: linInput{kind: linRegister, id: "m", addr: "m:1"}, Call: 0, Output: linOutput{}, Return: 0,
	}}
	record := func(op porcupine.Operation) {
		mu.Lock()
		defer mu.Unlock()
		history = append(history, op)
	}
	var nextClient int
	newClientID := func() int {
		mu.Lock()
		defer mu.Unlock()
		nextClient++
		return nextClient
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			cl, err := NewClient(c.GRPCAddrs(), ClientOptions{AttemptTimeout: 500 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			id := newClientID()
			gen := uint64(0)
			step := int64(0)
			for runCtx.Err() == nil {
				octx, cancel := context.WithTimeout(ctx, 3*time.Second)
				var in linInput
				var out linOutput
				call := now()
				var err error
				switch k := rng.IntN(10); {
				case k < 3:
					in = linInput{kind: linRegister, id: fmt.Sprintf("w%d", rng.IntN(4)), addr: fmt.Sprintf("h%d:1", rng.IntN(3))}
					_, err = cl.Register(octx, &pb.RegisterRequest{WorkerId: in.id, Address: in.addr})
				case k < 6:
					step += int64(1 + rng.IntN(3))
					in = linInput{kind: linProgress, step: step}
					var r *pb.ReportProgressResponse
					r, err = cl.ReportProgress(octx, &pb.ReportProgressRequest{WorkerId: "m", Generation: gen, Step: step, Loss: 1})
					out.step = r.GetProgress().GetStep()
				case k < 8:
					in = linInput{kind: linCheckpoint, step: int64(10 * (1 + rng.IntN(6))), sha: []string{digestA, digestB}[rng.IntN(2)]}
					_, err = cl.CommitCheckpoint(octx, &pb.CommitCheckpointRequest{WorkerId: "m", Generation: gen, Step: in.step, Location: "x", Sha256: in.sha})
				default:
					in = linInput{kind: linStatus}
					var st *pb.StatusResponse
					st, err = cl.Status(octx, false)
					s := st.GetState()
					out = linOutput{step: s.GetProgress().GetStep(), workers: canonWorkers(s.GetWorkers()), ckpts: canonCheckpoints(s.GetCheckpoints())}
					if err == nil {
						gen = s.GetPlan().GetGeneration()
					}
				}
				cancel()
				switch {
				case err == nil:
					record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: now()})
				case in.kind == linStatus || definite(err):
					// A failed read, or a write the state machine refused: no effect.
					if errors.Is(err, ErrStaleGeneration) || errors.Is(err, ErrNotMember) {
						gen = 0
					}
				default:
					// Unknown outcome: it may take effect at any time from now on.
					record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: linOutput{ambiguous: true}, Return: math.MaxInt64})
					id = newClientID()
				}
				if gen == 0 {
					if st, err := cl.Status(ctx, true); err == nil {
						gen = st.GetState().GetPlan().GetGeneration()
					}
				}
			}
		}()
	}

	// The nemesis: kill and restart replicas, partition the leader away and heal.
	rng := rand.New(rand.NewPCG(seed, 99))
	for round := range 6 {
		leader := c.Leader()
		if rng.IntN(2) == 0 {
			victim := rng.IntN(3)
			t.Logf("round %d: kill c%d (leader c%d)", round, victim, leader)
			c.Kill(victim)
			time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond)
			c.Restart(victim)
		} else {
			t.Logf("round %d: partition leader c%d away", round, leader)
			c.Partition(leader)
			time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
			c.Heal()
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	wg.Wait()
	c.Leader()
	// The final read: everything acknowledged must be in it.
	call := now()
	st, err := setup.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	s := st.GetState()
	record(porcupine.Operation{ClientId: newClientID(), Input: linInput{kind: linStatus}, Call: call,
		Output: linOutput{step: s.GetProgress().GetStep(), workers: canonWorkers(s.GetWorkers()), ckpts: canonCheckpoints(s.GetCheckpoints())}, Return: now()})

	counts := map[linKind]int{}
	ambiguous := 0
	for _, op := range history {
		counts[op.Input.(linInput).kind]++
		if op.Output.(linOutput).ambiguous {
			ambiguous++
		}
	}
	t.Logf("history: %d operations (register %d, progress %d, checkpoint %d, status %d; %d with unknown outcome)",
		len(history), counts[linRegister], counts[linProgress], counts[linCheckpoint], counts[linStatus], ambiguous)
	switch res := porcupine.CheckOperationsTimeout(linModel, history, 30*time.Second); res {
	case porcupine.Ok:
	case porcupine.Illegal:
		for _, op := range history {
			t.Logf("[%d, %d] client %d: %s", op.Call, op.Return, op.ClientId, linModel.DescribeOperation(op.Input, op.Output))
		}
		t.Fatalf("history is not linearizable (seed %d)", seed)
	default:
		t.Logf("linearizability check timed out (seed %d): inconclusive", seed)
	}
}
