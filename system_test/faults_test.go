package system_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fault-injection suite: each scenario runs the suite's job on real coordinator
// and worker processes on loopback, injects its faults while the job trains, and
// checks the outcome against a fault-free run of three workers (cluster.check and
// compare). Each logs a line "fault <scenario>: ..." with its measurements.
//
//	go test ./system_test -run TestFaults -v                       # every scenario once
//	RINGTRAIN_FAULT_RUNS=5 go test ./system_test -run TestFaults/kill-worker -v
//	RINGTRAIN_FAULT_SEEDS=1,2,3,4,5 go test ./system_test -run TestFaults/random -v

// runs is how many times each scenario runs (RINGTRAIN_FAULT_RUNS, default 1).
func runs() int {
	if n, err := strconv.Atoi(os.Getenv("RINGTRAIN_FAULT_RUNS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// measurement is what one run of a scenario measured.
type measurement struct {
	scenario   string
	recovery   time.Duration // fault to the first update of a newer generation
	maxGap     time.Duration // longest time between two updates after the fault
	gapAt      time.Duration // when that gap began, from the fault
	step       time.Duration // median time between updates
	recomputed int64
	lost       int64
	repeated   int64
}

func (m measurement) String() string {
	rec := "none (the generation never changed)"
	if m.recovery > 0 {
		rec = m.recovery.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("fault %s: fault to first step of a new generation %s, longest gap between steps after the fault %v (from +%v; median step %v), steps recomputed %d, samples lost %d, samples repeated %d",
		m.scenario, rec, m.maxGap.Round(time.Millisecond), m.gapAt.Round(time.Millisecond), m.step.Round(time.Microsecond), m.recomputed, m.lost, m.repeated)
}

func measure(name string, o *outcome, at time.Time) measurement {
	rec, gap, gapAt := recovery(o.records, at)
	return measurement{scenario: name, recovery: rec, maxGap: gap, gapAt: gapAt, step: medianStep(o.records),
		recomputed: o.audit.Recomputed, lost: o.audit.Lost, repeated: o.audit.Repeated}
}

func startWorkers(c *cluster, n int) {
	for i := range n {
		c.startWorker(fmt.Sprintf("w%d", i))
	}
}

// trainUntil starts workers w0..w(n-1), waits until the job's committed progress
// reaches step, and returns the time: the moment the scenario's fault begins.
func (c *cluster) trainUntil(n int, step int64) time.Time {
	c.t.Helper()
	startWorkers(c, n)
	c.waitStep(step, 2*time.Minute)
	return time.Now()
}

// scenario is one fault scenario: run builds a cluster, trains, injects the fault
// (returning when it began) and waits for the job to finish.
type scenario struct {
	name         string
	worldChanged bool // whether the world size changes (logged; exact mode keeps the bits either way)
	run          func(t *testing.T) (*cluster, time.Time)
}

// runScenarios runs each scenario runs() times as a subtest, checks each run and
// logs its measurements.
func runScenarios(t *testing.T, family string, ref *outcome, scenarios []scenario) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for i := range runs() {
				c, at := sc.run(t)
				got := c.check()
				compare(t, got, ref, sc.worldChanged)
				t.Logf("run %d: %v", i+1, measure(family+sc.name, got, at))
			}
		})
	}
}

// mkCluster builds a cluster of n coordinator replicas for a job of minWorkers to
// maxWorkers workers: on loopback, in network namespaces or in containers.
type mkCluster func(t *testing.T, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster

// commonScenarios are the scenarios every family runs, on the clusters mk builds.
func commonScenarios(mk mkCluster) []scenario {
	return []scenario{
		{"kill-worker", true, func(t *testing.T) (*cluster, time.Time) {
			// SIGKILL one of three workers; it comes back two seconds later and rejoins.
			c := mk(t, 1, 2, 3)
			at := c.trainUntil(3, faultSteps/3)
			c.kill("w1")
			time.Sleep(2 * time.Second)
			c.startWorker("w1")
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"pause-worker", false, func(t *testing.T) (*cluster, time.Time) {
			// Stop a worker for less than the ring's progress timeout: the ring waits.
			c := mk(t, 1, 3, 3)
			at := c.trainUntil(3, faultSteps/3)
			c.signal("w2", syscall.SIGSTOP)
			time.Sleep(2 * time.Second)
			c.signal("w2", syscall.SIGCONT)
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"kill-leader", false, func(t *testing.T) (*cluster, time.Time) {
			// SIGKILL the coordinator leader of three, restart it a second later;
			// workers must not stall.
			c := mk(t, 3, 3, 3)
			c.trainUntil(3, faultSteps/3)
			l := c.leader()
			at := time.Now()
			c.killCoordinator(l)
			time.Sleep(time.Second)
			c.leader()
			c.restartCoordinator(l)
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"restart-all", false, func(t *testing.T) (*cluster, time.Time) {
			// SIGKILL every process; restart them: training resumes from the newest
			// committed checkpoint.
			c := mk(t, 1, 3, 3)
			at := c.trainUntil(3, faultSteps/2)
			for i := range 3 {
				c.kill(fmt.Sprintf("w%d", i))
			}
			c.killCoordinator(0)
			c.restartCoordinator(0)
			startWorkers(c, 3)
			c.finish(3 * time.Minute)
			return c, at
		}},
	}
}

func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault suite: skipped with -short")
	}
	ref := reference(t)
	runScenarios(t, "", ref, append(commonScenarios(newCluster), []scenario{
		{"hang-worker", true, func(t *testing.T) (*cluster, time.Time) {
			// SIGSTOP a worker for longer than the progress timeout: it is removed, and
			// rejoins when it continues.
			c := newCluster(t, 1, 2, 3)
			at := c.trainUntil(3, faultSteps/3)
			c.signal("w2", syscall.SIGSTOP)
			time.Sleep(8 * time.Second)
			c.signal("w2", syscall.SIGCONT)
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"kill-during-checkpoint", true, func(t *testing.T) (*cluster, time.Time) {
			// SIGKILL rank 0, the checkpoint writer, while it writes a checkpoint.
			c := newCluster(t, 1, 2, 3)
			c.trainUntil(3, 2*faultCkpt-10)
			victim := c.rank0()
			seen := c.waitCheckpointWrite(2*faultCkpt, 30*time.Second)
			at := time.Now()
			c.kill(victim)
			t.Logf("killed %s %s", victim, map[bool]string{true: "while its checkpoint's temporary directory existed", false: "after the checkpoint step (the write was too quick to catch)"}[seen])
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"stop-all", false, func(t *testing.T) (*cluster, time.Time) {
			// SIGTERM every worker (each leaves) and then the coordinator; start them
			// again: the job resumes from the newest committed checkpoint.
			c := newCluster(t, 1, 3, 3)
			at := c.trainUntil(3, faultSteps/2)
			for i := range 3 {
				c.signal(fmt.Sprintf("w%d", i), syscall.SIGTERM)
			}
			for i := range 3 {
				if err := c.worker(fmt.Sprintf("w%d", i)).p.wait(t, 30*time.Second); err != nil {
					t.Fatalf("w%d did not stop cleanly: %v", i, err)
				}
			}
			c.coords[0].p.cmd.Process.Signal(syscall.SIGTERM)
			if err := c.coords[0].p.wait(t, 30*time.Second); err != nil {
				t.Fatalf("the coordinator did not stop cleanly: %v", err)
			}
			c.restartCoordinator(0)
			startWorkers(c, 3)
			c.finish(3 * time.Minute)
			return c, at
		}},
		{"scale", true, func(t *testing.T) (*cluster, time.Time) {
			// Add a fourth worker, then SIGTERM one (a graceful leave).
			c := newCluster(t, 1, 2, 4)
			at := c.trainUntil(3, faultSteps/4)
			c.startWorker("w3")
			c.waitStep(faultSteps/2, time.Minute)
			c.signal("w0", syscall.SIGTERM)
			c.finish(3 * time.Minute)
			return c, at
		}},
	}...))
	t.Run("random", func(t *testing.T) {
		seeds := []uint64{1, 2}
		if s := os.Getenv("RINGTRAIN_FAULT_SEEDS"); s != "" {
			seeds = nil
			for _, f := range splitComma(s) {
				n, err := strconv.ParseUint(f, 10, 64)
				if err != nil {
					t.Fatalf("RINGTRAIN_FAULT_SEEDS: %q: %v", f, err)
				}
				seeds = append(seeds, n)
			}
		}
		for _, seed := range seeds {
			t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
				randomFaults(t, seed, ref)
			})
		}
	})
}

// TestFaultsSFT runs the kill-worker scenario with the SFT job (objective sft on an
// instruction dataset): the same streams, ring, recovery, audit and checkpoints as
// pre-training, compared with a fault-free SFT run of three workers.
//
//	go test ./system_test -run TestFaultsSFT -v
func TestFaultsSFT(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault suite: skipped with -short")
	}
	mk := func(t *testing.T, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster {
		return newClusterJob(t, nil, sftJob, n, minWorkers, maxWorkers, coordFlags...)
	}
	var kill []scenario
	for _, sc := range commonScenarios(mk) {
		if sc.name == "kill-worker" {
			kill = append(kill, sc)
		}
	}
	runScenarios(t, "sft/", referenceSFT(t), kill)
}

// randomFaults injects up to three faults at random times, chosen from a seeded
// source: a worker killed and started again at once (its rejoin waits for the
// coordinator's hold-off), a worker paused briefly, the coordinator leader killed
// and restarted a second later. The first comes at a random step in the first
// third of the job, each next one a random 0.2-1.2 s after the previous ended;
// none is injected in the job's last 30 steps.
func randomFaults(t *testing.T, seed uint64, ref *outcome) {
	t.Logf("seed %d (rerun with RINGTRAIN_FAULT_SEEDS=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	c := newCluster(t, 3, 2, 3)
	at := c.trainUntil(3, int64(faultSteps/6+r.IntN(faultSteps/6)))
	var changed bool
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Duration(200+r.IntN(1000)) * time.Millisecond)
		}
		step := c.status().GetProgress().GetStep()
		victim := fmt.Sprintf("w%d", r.IntN(3))
		kind := r.IntN(3)
		switch {
		case step >= faultSteps-30:
			t.Logf("step %d: too close to the end for another fault", step)
		case kind < 2 && c.worker(victim).p.exited():
			t.Logf("step %d: %s has already exited; no fault", step, victim)
		case kind == 0:
			t.Logf("step %d: kill %s and start it again", step, victim)
			c.kill(victim)
			c.startWorker(victim)
			changed = true
		case kind == 1:
			d := time.Duration(300+r.IntN(1200)) * time.Millisecond
			t.Logf("step %d: pause %s for %v", step, victim, d)
			c.signal(victim, syscall.SIGSTOP)
			time.Sleep(d)
			c.signal(victim, syscall.SIGCONT)
		default:
			l := c.leader()
			t.Logf("step %d: kill coordinator leader c%d, restart it 1s later", step, l)
			c.killCoordinator(l)
			time.Sleep(time.Second)
			c.restartCoordinator(l)
		}
	}
	c.finish(3 * time.Minute)
	got := c.check()
	compare(t, got, ref, changed)
	t.Log(measure(fmt.Sprint("random seed ", seed), got, at))
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// waitCheckpointWrite polls the run's checkpoint directory until the temporary
// directory of step's checkpoint appears (true), or progress passes step (false).
func (c *cluster) waitCheckpointWrite(step int64, d time.Duration) bool {
	c.t.Helper()
	prefix := fmt.Sprintf(".step-%06d.tmp-", step)
	root := filepath.Join(c.dir, "run", "ckpt")
	deadline := time.Now().Add(d)
	for i := 0; time.Now().Before(deadline); i++ {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				return true
			}
		}
		if i%200 == 0 && c.status().GetProgress().GetStep() > step {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	c.t.Fatalf("no checkpoint of step %d within %v", step, d)
	return false
}

// rank0 returns the worker that is rank 0 of the current plan.
func (c *cluster) rank0() string {
	c.t.Helper()
	members := c.status().GetPlan().GetMembers()
	if len(members) == 0 {
		c.t.Fatal("no plan")
	}
	return members[0]
}
