package system_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/worker"
)

// The fault suite's job: 6 streams (so 1, 2, 3 and 6 workers split them evenly), a
// small model, and enough steps that faults land in the middle of training. It runs
// in exact mode, so every scenario, those that change the world size included, must
// end with the fault-free run's weights bit for bit.
const (
	faultStreams = 6
	faultSteps   = 300
	faultCkpt    = 50
)

var (
	sharedOnce sync.Once
	sharedDir  string // binary and data shared by every test of the package
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// shared builds the binary and prepares the data once per test binary.
func shared(t *testing.T) (bin, data string) {
	t.Helper()
	sharedOnce.Do(func() {
		if sharedDir, sharedErr = os.MkdirTemp("", "ringtrain-system-"); sharedErr != nil {
			return
		}
		bin := filepath.Join(sharedDir, "ringtrain")
		if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ringtrain").CombinedOutput(); err != nil {
			sharedErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		text := filepath.Join(sharedDir, "input.txt")
		if sharedErr = os.WriteFile(text, []byte(examples.TinyShakespeare[:120_000]), 0o644); sharedErr != nil {
			return
		}
		_, sharedErr = shard.PrepareText(context.Background(), "char", shard.PrepareOptions{
			Inputs: []string{text}, OutDir: filepath.Join(sharedDir, "data"), MinShards: faultStreams})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return filepath.Join(sharedDir, "ringtrain"), filepath.Join(sharedDir, "data")
}

var (
	sftOnce sync.Once
	sftErr  error
)

// sharedSFT prepares the SFT job's data once per test binary, with the binary itself:
// synthetic uppercase and reverse instructions, byte tokenizer, one example per row of
// 65 tokens, faultStreams shards.
func sharedSFT(t *testing.T) (bin, data string) {
	t.Helper()
	bin, _ = shared(t)
	data = filepath.Join(sharedDir, "sft")
	sftOnce.Do(func() {
		out, err := exec.Command(bin, "prepare", "--synthetic", "upper,reverse", "--synthetic-examples", "1000",
			"--tokenizer", "byte", "--seq", "64", "--min-shards", fmt.Sprint(faultStreams), "--out", data).CombinedOutput()
		if err != nil {
			sftErr = fmt.Errorf("prepare --synthetic: %v\n%s", err, out)
		}
	})
	if sftErr != nil {
		t.Fatal(sftErr)
	}
	return bin, data
}

// jobKind chooses the suite's job: causal pre-training on text, or SFT.
type jobKind int

const (
	textJob jobKind = iota
	sftJob
	ppoJob // ppo on the SFT job's prompts (ppo_test.go)
)

// cluster is a coordinator cluster and workers run as separate processes on
// loopback, with the test's fault injection: kill, stop and continue, restart.
type cluster struct {
	t        *testing.T
	bin, dir string
	coords   []*coordProc
	workers  map[string]*workerProc
	auditDir string
	job      string // the job spec file
	cl       *coordinator.Client
	lab      network         // nil: every process on loopback
	extra    []string        // extra coordinator flags
	admin    *security.Store // the test's certificate (ringtrain://admin/test)
	mu       sync.Mutex
}

type coordProc struct {
	id, raftAddr, grpcAddr, dataDir string
	args                            []string
	p                               *proc
	restarts                        int
}

type workerProc struct {
	id, addr string
	dataPort int // the all-reduce lanes' port (--data-port)
	p        *proc
	restarts int
}

// newCluster starts n coordinator replicas (a static Raft cluster) and submits the
// suite's job for at most maxWorkers workers.
func newCluster(t *testing.T, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster {
	t.Helper()
	return newClusterIn(t, nil, n, minWorkers, maxWorkers, coordFlags...)
}

// newClusterIn is newCluster with every process in its own network namespace of
// lab (on loopback when lab is nil).
func newClusterIn(t *testing.T, lab network, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster {
	t.Helper()
	return newClusterJob(t, lab, textJob, n, minWorkers, maxWorkers, coordFlags...)
}

// newClusterJob is newClusterIn for the job of kind: the text job, or the SFT job (the
// same model, streams, steps and checkpoints, on sharedSFT's data with objective sft).
func newClusterJob(t *testing.T, lab network, kind jobKind, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster {
	t.Helper()
	bin, data := shared(t)
	objective := "causal"
	if kind == sftJob || kind == ppoJob {
		bin, data = sharedSFT(t)
		objective = "sft"
	}
	extraSpec := ""
	if kind == ppoJob {
		objective, extraSpec = "ppo", ppoJobYAML(t)
	}
	c := &cluster{t: t, bin: bin, dir: t.TempDir(), workers: map[string]*workerProc{}, lab: lab, extra: coordFlags}
	c.auditDir = filepath.Join(c.dir, "audit")
	if err := os.MkdirAll(c.auditDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Every process runs mutual TLS with a certificate of the suite's CA, made
	// with the binary's own 'certs' commands.
	c.run("certs", "ca", "--out", c.tlsDir("ca"))
	admin, err := security.LoadDir(c.certDir(security.RoleAdmin, "test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.admin = admin
	var peers []string
	for i := range n {
		cp := &coordProc{id: fmt.Sprintf("c%d", i), raftAddr: freeAddr(t), grpcAddr: freeAddr(t)}
		if lab != nil {
			ip := lab.controlIP(cp.id)
			cp.raftAddr, cp.grpcAddr = ip+":7000", ip+":7001"
		}
		cp.dataDir = filepath.Join(c.dir, cp.id)
		peers = append(peers, cp.id+"="+cp.raftAddr)
		c.coords = append(c.coords, cp)
	}
	for _, cp := range c.coords {
		cp.args = []string{"coordinator", "--id", cp.id, "--data-dir", cp.dataDir,
			"--raft-addr", cp.raftAddr, "--grpc-addr", cp.grpcAddr, "--log-level", "info",
			"--tls-dir", c.certDir(security.RoleCoordinator, cp.id)}
		cp.args = append(cp.args, c.extra...)
		if n > 1 {
			cp.args = append(cp.args, "--peers", strings.Join(peers, ","))
		}
		cp.p = c.launch(cp.id, cp.id, nil, cp.args)
	}
	cl, err := coordinator.NewClient(c.grpcAddrs(), coordinator.ClientOptions{TLS: c.admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.cl = cl

	job := filepath.Join(c.dir, "job.yaml")
	spec := fmt.Sprintf(`model: {layers: 2, heads: 4, embd: 96}
objective: %s
data: %s
out: %s
seq_len: 64
micro_batch: 2
streams: %d
steps: %d
seed: 11
lr: 0.003
min_lr: 0.0003
warmup_steps: 20
log_interval: 50
eval_interval: 0
eval_batches: 0
checkpoint_interval: %d
exact: true
%s`, objective, data, filepath.Join(c.dir, "run"), faultStreams, faultSteps, faultCkpt, extraSpec)
	if err := os.WriteFile(job, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	c.job = job
	submit := exec.Command(bin, "submit", job, "--coordinators", strings.Join(c.grpcAddrs(), ","),
		"--min-workers", fmt.Sprint(minWorkers), "--max-workers", fmt.Sprint(maxWorkers), "--timeout", "60s",
		"--tls-dir", c.certDir(security.RoleAdmin, "test"))
	if out, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	return c
}

// tlsDir is where the suite keeps the certificates of name.
func (c *cluster) tlsDir(name string) string { return filepath.Join(c.dir, "tls", name) }

// certDir returns the directory of the certificate of role and id (ca.crt,
// tls.crt, tls.key), issued with 'ringtrain certs issue' the first time.
func (c *cluster) certDir(role security.Role, id string) string {
	c.t.Helper()
	dir := c.tlsDir(string(role) + "-" + id)
	if _, err := os.Stat(filepath.Join(dir, security.CertFile)); err == nil {
		return dir
	}
	hosts := "127.0.0.1,localhost"
	if c.lab != nil {
		hosts += "," + c.lab.controlIP(id)
	}
	c.run("certs", "issue", "--ca", c.tlsDir("ca"), "--role", string(role), "--id", id, "--hosts", hosts, "--out", dir)
	return dir
}

// run runs the binary to completion, failing the test if it fails.
func (c *cluster) run(args ...string) {
	c.t.Helper()
	if out, err := exec.Command(c.bin, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("ringtrain %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cluster) grpcAddrs() []string {
	var out []string
	for _, cp := range c.coords {
		out = append(out, cp.grpcAddr)
	}
	return out
}

// startWorker starts (or restarts, with the same id, address and audit log) worker id.
func (c *cluster) startWorker(id string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	wp := c.workers[id]
	listen := ""
	if wp == nil {
		wp = &workerProc{id: id, addr: freeAddr(c.t), dataPort: 7101}
		if c.lab != nil {
			wp.addr = c.lab.ringIP(id) + ":7100"
		} else {
			_, port, _ := net.SplitHostPort(freeAddr(c.t))
			wp.dataPort, _ = strconv.Atoi(port)
		}
		c.workers[id] = wp
	} else {
		wp.restarts++
	}
	listen = wp.addr
	if c.lab != nil {
		listen = ":7100"
	}
	name := fmt.Sprintf("%s.%d", id, wp.restarts)
	wp.p = c.launch(id, name, []string{"GOMAXPROCS=1"}, []string{"worker", "--id", id,
		"--coordinators", strings.Join(c.grpcAddrs(), ","), "--listen", listen, "--advertise", wp.addr,
		"--audit-log", filepath.Join(c.auditDir, id+".jsonl"), "--log-level", "info",
		"--tls-dir", c.certDir(security.RoleWorker, id), "--data-port", strconv.Itoa(wp.dataPort)})
}

// launch starts the binary with args as process name, in host's namespace when the
// cluster runs in a lab.
func (c *cluster) launch(host, name string, env, args []string) *proc {
	c.t.Helper()
	if c.lab == nil {
		return startEnv(c.t, c.bin, c.dir, name, env, args...)
	}
	return c.lab.launch(c, host, name, env, args)
}

// network is where a cluster's processes run when not all on loopback: each in its
// own network namespace (netLab) or container (dockerLab), so that links between
// them can be cut.
type network interface {
	// controlIP is the address host is reached at by the coordinators and the test.
	controlIP(host string) string
	// ringIP is the address host's peers dial for the ring.
	ringIP(host string) string
	// launch starts the binary with env and args as process name on host.
	launch(c *cluster, host, name string, env, args []string) *proc
	// signal delivers sig to the process on host (SIGSTOP and SIGCONT may freeze
	// and thaw it by other means).
	signal(host string, p *proc, sig syscall.Signal) error
}

func (c *cluster) worker(id string) *workerProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workers[id]
}

// signal sends sig to worker id's process.
func (c *cluster) signal(id string, sig syscall.Signal) {
	c.t.Helper()
	p := c.worker(id).p
	if sig == syscall.SIGKILL {
		p.markKilled()
	}
	send := func() error { return p.cmd.Process.Signal(sig) }
	if c.lab != nil {
		send = func() error { return c.lab.signal(id, p, sig) }
	}
	if err := send(); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, id, err)
	}
}

// kill SIGKILLs worker id and waits for it to be gone.
func (c *cluster) kill(id string) {
	c.t.Helper()
	c.signal(id, syscall.SIGKILL)
	c.worker(id).p.wait(c.t, 10*time.Second)
}

// status reads the replicated state from any replica (possibly stale: a replica
// that was cut off may not have caught up yet).
func (c *cluster) status() *pb.CoordinatorState {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.cl.Status(ctx, true)
	if err != nil {
		return nil
	}
	return st.GetState()
}

// committed reads the replicated state from the leader, after it confirmed its
// leadership with a quorum: every committed record is in it.
func (c *cluster) committed() *pb.CoordinatorState {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.cl.Status(ctx, false)
	if err != nil {
		c.t.Fatalf("status from the leader: %v", err)
	}
	return st.GetState()
}

// waitStep waits until the committed progress reaches step.
func (c *cluster) waitStep(step int64, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.status().GetProgress().GetStep() >= step {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("progress did not reach step %d within %v (at %d)", step, d, c.status().GetProgress().GetStep())
}

// waitRemoved waits until the current plan no longer has worker id as a member,
// failing the test if the job ends first: a scenario that means to remove a worker
// must not pass without doing so.
func (c *cluster) waitRemoved(id string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		st := c.status()
		if st != nil && !slices.Contains(st.GetPlan().GetMembers(), id) {
			if st.GetProgress().GetStep() >= faultSteps {
				c.t.Fatalf("the job finished before %s was removed", id)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("%s was not removed within %v", id, d)
}

// leader returns the index of the replica that leads.
func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, cp := range c.coords {
			if cp.p == nil || cp.p.exited() {
				continue
			}
			cl, err := coordinator.NewClient([]string{cp.grpcAddr}, coordinator.ClientOptions{TLS: c.admin})
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cl.Status(ctx, true)
			cancel()
			cl.Close()
			if err == nil && st.GetRaftState() == "Leader" {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no coordinator leads")
	return -1
}

// killCoordinator SIGKILLs replica i; restartCoordinator starts it again on its data.
func (c *cluster) killCoordinator(i int) {
	c.t.Helper()
	cp := c.coords[i]
	cp.p.markKilled()
	if c.lab != nil {
		if err := c.lab.signal(cp.id, cp.p, syscall.SIGKILL); err != nil {
			c.t.Fatal(err)
		}
	} else {
		cp.p.cmd.Process.Kill()
	}
	cp.p.wait(c.t, 10*time.Second)
}

func (c *cluster) restartCoordinator(i int) {
	c.t.Helper()
	cp := c.coords[i]
	cp.restarts++
	cp.p = c.launch(cp.id, fmt.Sprintf("%s.%d", cp.id, cp.restarts), nil, cp.args)
}

// finish waits for every running worker to exit successfully.
func (c *cluster) finish(d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	var ws []*workerProc
	for _, w := range c.workers {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		if err := w.p.wait(c.t, d); err != nil && !w.p.killed.Load() {
			c.t.Fatalf("%s exited with %v", w.id, err)
		}
	}
}

// outcome is what a finished run left behind.
type outcome struct {
	params  []float32
	loss    float64
	audit   *worker.AuditReport
	records []worker.AuditRecord
}

// check verifies a finished run: the committed progress and checkpoint are at the
// last step, every checkpoint committed verifies, and the audit logs prove that all
// ranks finished identical and every sample was used exactly once.
func (c *cluster) check() *outcome {
	c.t.Helper()
	st := c.committed()
	if got := st.GetProgress().GetStep(); got != faultSteps {
		c.t.Fatalf("committed step %d, want %d", got, faultSteps)
	}
	cks := st.GetCheckpoints()
	if len(cks) == 0 || cks[len(cks)-1].GetStep() != faultSteps {
		c.t.Fatalf("committed checkpoints %v, want the last at step %d", cks, faultSteps)
	}
	for _, ck := range cks {
		digest, err := model.CheckpointDigest(ck.GetLocation())
		if err != nil || digest != ck.GetSha256() {
			c.t.Fatalf("committed checkpoint %s (step %d) does not verify: %v", ck.GetLocation(), ck.GetStep(), err)
		}
	}
	last, err := model.LoadCheckpoint(cks[len(cks)-1].GetLocation())
	if err != nil {
		c.t.Fatal(err)
	}
	paths, _ := filepath.Glob(filepath.Join(c.auditDir, "*.jsonl"))
	recs, err := worker.ReadAudit(paths...)
	if err != nil {
		c.t.Fatal(err)
	}
	rep, err := worker.VerifyAudit(recs, faultStreams)
	if err != nil {
		c.t.Fatalf("audit: %v (%+v)", err, rep)
	}
	if rep.Steps != faultSteps {
		c.t.Fatalf("audit lineage has %d steps, want %d", rep.Steps, faultSteps)
	}
	return &outcome{params: last.Params, loss: last.Trainer.Loss, audit: rep, records: recs}
}

var (
	refOnce, sftRefOnce sync.Once
	refOut, sftRefOut   *outcome
)

// reference is the fault-free run of three workers every scenario compares with.
func reference(t *testing.T) *outcome {
	t.Helper()
	return referenceOf(t, textJob, &refOnce, &refOut)
}

// referenceSFT is the fault-free run of the SFT job on three workers.
func referenceSFT(t *testing.T) *outcome {
	t.Helper()
	return referenceOf(t, sftJob, &sftRefOnce, &sftRefOut)
}

func referenceOf(t *testing.T, kind jobKind, once *sync.Once, out **outcome) *outcome {
	t.Helper()
	once.Do(func() {
		c := newClusterJob(t, nil, kind, 1, 3, 3)
		for i := range 3 {
			c.startWorker(fmt.Sprintf("w%d", i))
		}
		c.finish(3 * time.Minute)
		*out = c.check()
		first := int64(math.MaxInt64)
		for _, r := range (*out).records {
			if r.Event == "apply" {
				first = min(first, r.Time)
			}
		}
		_, gap, _ := recovery((*out).records, time.Unix(0, first))
		t.Logf("fault-free %s run of 3 workers: median step %v, longest gap between steps %v (checkpoints are written every %d steps)",
			map[jobKind]string{textJob: "text", sftJob: "sft", ppoJob: "ppo"}[kind], medianStep((*out).records).Round(time.Microsecond), gap.Round(time.Millisecond), faultCkpt)
	})
	if *out == nil {
		t.Fatal("the fault-free reference run failed")
	}
	return *out
}

func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / n)
}

// compare checks a run against the fault-free one: bit-identical when the world
// size never changed, otherwise within 1e-3 relative L2 with the same loss to 3
// decimals.
func compare(t *testing.T, got, ref *outcome, worldChanged bool) {
	t.Helper()
	// The job runs in exact mode: whatever the world sizes the faults made, the
	// summed gradient of every step is the same bits, and so are the weights.
	t.Logf("world sizes trained at: %v (the scenario changes it: %v)", worldSizes(got.records), worldChanged)
	for i := range ref.params {
		if math.Float32bits(got.params[i]) != math.Float32bits(ref.params[i]) {
			t.Fatalf("final weights differ from the fault-free run at parameter %d: %v vs %v (relative L2 %.3g)",
				i, got.params[i], ref.params[i], relL2(got.params, ref.params))
		}
	}
	if got.loss != ref.loss {
		t.Errorf("final loss %v, fault-free %v: not the same bits", got.loss, ref.loss)
	}
}

// worldSizes returns the distinct world sizes of the applied updates, in order
// of first appearance.
func worldSizes(recs []worker.AuditRecord) []int {
	var out []int
	for _, r := range recs {
		if r.Event == "apply" && !slices.Contains(out, r.World) {
			out = append(out, r.World)
		}
	}
	return out
}

// recovery measures a fault at time at from the audit records: the time to the
// first update applied in a generation newer than the one training at the fault
// (zero when the generation never changed), and the longest gap between
// consecutive updates after the fault.
func recovery(recs []worker.AuditRecord, at time.Time) (toNewGen, maxGap, gapAt time.Duration) {
	var genAt uint64
	applied := map[int64]int64{} // step -> first time it was applied
	for _, r := range recs {
		if r.Event != "apply" {
			continue
		}
		if r.Time <= at.UnixNano() {
			genAt = max(genAt, r.Generation)
		}
		if t, ok := applied[r.Step]; !ok || r.Time < t {
			applied[r.Step] = r.Time
		}
	}
	first := int64(math.MaxInt64)
	for _, r := range recs {
		if r.Event == "apply" && r.Generation > genAt && r.Time > at.UnixNano() {
			first = min(first, r.Time)
		}
	}
	if first != math.MaxInt64 {
		toNewGen = time.Duration(first - at.UnixNano())
	}
	var times []int64
	for _, t := range applied {
		times = append(times, t)
	}
	slices.Sort(times)
	prev := at.UnixNano()
	for _, t := range times {
		if t <= prev {
			continue
		}
		if d := time.Duration(t - prev); d > maxGap {
			maxGap, gapAt = d, time.Duration(prev-at.UnixNano())
		}
		prev = t
	}
	return toNewGen, maxGap, gapAt
}

// medianStep is the median time between consecutive updates of a run.
func medianStep(recs []worker.AuditRecord) time.Duration {
	applied := map[int64]int64{}
	for _, r := range recs {
		if r.Event == "apply" {
			if t, ok := applied[r.Step]; !ok || r.Time < t {
				applied[r.Step] = r.Time
			}
		}
	}
	var times []int64
	for _, t := range applied {
		times = append(times, t)
	}
	slices.Sort(times)
	var gaps []float64
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, float64(times[i]-times[i-1]))
	}
	if len(gaps) == 0 {
		return 0
	}
	sort.Float64s(gaps)
	return time.Duration(gaps[len(gaps)/2])
}
