package system_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// The attacks TestSecurity injects into its running cluster, one function each.
// Each says what would happen without the protection it checks.

// attackForgedRaft sends Raft AppendEntries with a far higher term to every
// replica, over TLS with certificates of the cluster's CA that are not a
// coordinator's (a worker's and an admin's). Without the role check on the Raft
// transport the replicas would take the forged term (the leader stepping down
// to follow "c9"); with it no RPC is answered and the term stays where it was.
func attackForgedRaft(t *testing.T, c *cluster) {
	t.Helper()
	before := c.leaderStatus()
	forged := before.GetTerm() + 1_000_000
	for _, who := range []struct {
		role security.Role
		id   string
	}{{security.RoleWorker, "w0"}, {security.RoleAdmin, "test"}} {
		st, err := security.LoadDir(c.certDir(who.role, who.id), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range c.coords {
			err := forgeAppendEntries(st, cp.raftAddr, forged)
			if err == nil {
				t.Errorf("Raft at %s (%s) answered a forged AppendEntries from %s %s", cp.raftAddr, cp.id, who.role, who.id)
			}
		}
	}
	after := c.leaderStatus()
	if after.GetTerm() >= forged || after.GetLeaderId() == "c9" {
		t.Errorf("the forged AppendEntries took effect: term %d, leader %q (forged term %d)", after.GetTerm(), after.GetLeaderId(), forged)
	}
	if after.GetTerm() != before.GetTerm() {
		// Not the forged term: an election of the loaded machine's own.
		t.Logf("the leader's term moved from %d to %d (an election) across the forged AppendEntries", before.GetTerm(), after.GetTerm())
	}
}

// forgeAppendEntries sends one AppendEntries of term from "c9" to the Raft
// server at addr through raft's own network transport, dialling with st's
// certificate, and returns the transport's error.
func forgeAppendEntries(st *security.Store, addr string, term uint64) error {
	layer := &dialLayer{cfg: st.ClientConfig(security.Expect{Roles: []security.Role{security.RoleCoordinator}}), closed: make(chan struct{})}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 1, Timeout: 5 * time.Second})
	defer tr.Close()
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("c9"), Addr: []byte("127.0.0.1:1")},
		Term:      term,
	}
	var resp raft.AppendEntriesResponse
	return tr.AppendEntries("c0", raft.ServerAddress(addr), req, &resp)
}

// dialLayer is a raft.StreamLayer that only dials, with TLS.
type dialLayer struct {
	cfg       *tls.Config
	closed    chan struct{}
	closeOnce sync.Once
}

func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, d.cfg)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

func (d *dialLayer) Accept() (net.Conn, error) { <-d.closed; return nil, net.ErrClosed }
func (d *dialLayer) Close() error              { d.closeOnce.Do(func() { close(d.closed) }); return nil }
func (d *dialLayer) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// attackBogusVoter asks, with an admin's and with coordinator c0's certificate,
// to add a voter "c9" that has no coordinator certificate. Without the policy
// (AddVoter: a coordinator for itself only) raft would add a fourth voter at an
// address nobody serves, and a quorum would need three of four.
func attackBogusVoter(t *testing.T, c *cluster, ctx func() context.Context) {
	t.Helper()
	for _, who := range []struct {
		role security.Role
		id   string
	}{{security.RoleAdmin, "test"}, {security.RoleCoordinator, "c0"}} {
		cl := c.clientAs(who.role, who.id)
		err := cl.AddVoter(ctx(), "c9", freeAddr(t), freeAddr(t))
		if status.Code(err) != codes.PermissionDenied && !strings.Contains(errString(err), "PermissionDenied") {
			t.Errorf("AddVoter c9 with %s %s's certificate: %v, want PermissionDenied", who.role, who.id, err)
		}
	}
	var voters []string
	for _, r := range c.leaderStatus().GetReplicas() {
		if r.GetSuffrage() == "voter" {
			voters = append(voters, r.GetId())
		}
	}
	slices.Sort(voters)
	if !slices.Equal(voters, []string{"c0", "c1", "c2"}) {
		t.Errorf("voters after the bogus AddVoter: %v, want [c0 c1 c2]", voters)
	}
}

// attackGiantFields submits, as an admin, jobs whose data, out or name fields
// are 3 MiB each, many times. Each must be refused before Raft with an error
// that names the field and is short (the value is never echoed whole); the
// replicated state must not grow (without the bound on paths and on the errors
// remembered in client sessions, every refusal would add megabytes to every
// replica's state and snapshots); status must stay small and fast, and a new
// worker must still register.
func attackGiantFields(t *testing.T, c *cluster, ctx func() context.Context) {
	t.Helper()
	before := c.leaderStatus()
	job := before.GetState().GetJob()
	var spec map[string]any
	if err := json.Unmarshal(job.GetSpecJson(), &spec); err != nil {
		t.Fatal(err)
	}
	giant := strings.Repeat("/x", 3<<20/2)
	const rounds = 24
	for i := range rounds {
		field := []string{"data", "out", "init_from"}[i%3]
		bad := maps.Clone(spec)
		bad[field] = giant + strconv.Itoa(i)
		b, err := json.Marshal(bad)
		if err != nil {
			t.Fatal(err)
		}
		j := proto.CloneOf(job)
		j.SpecJson = b
		start := time.Now()
		err = c.cl.SubmitJob(ctx(), &pb.SubmitJobRequest{Job: j, Replace: true})
		msg := errString(err)
		switch {
		case err == nil:
			t.Fatalf("a job with a 3 MiB %s was accepted", field)
		case !errors.Is(err, coordinator.ErrBadCommand):
			t.Errorf("a job with a 3 MiB %s: %.300s, want coordinator.ErrBadCommand", field, msg)
		case !strings.Contains(msg, field) || !strings.Contains(msg, "4096"):
			t.Errorf("the refusal of a 3 MiB %s names neither the field nor the limit: %.300s", field, msg)
		case len(msg) > 2048:
			t.Errorf("the refusal of a 3 MiB %s is %d bytes long", field, len(msg))
		case time.Since(start) > 10*time.Second:
			t.Errorf("the refusal of a 3 MiB %s took %v", field, time.Since(start))
		}
	}
	after := c.leaderStatus()
	if after.GetState().GetJobVersion() != before.GetState().GetJobVersion() {
		t.Errorf("job version %d after the refused jobs, was %d", after.GetState().GetJobVersion(), before.GetState().GetJobVersion())
	}
	if grew := proto.Size(after) - proto.Size(before); grew > 64<<10 {
		t.Errorf("the status response grew by %d bytes across %d refused giant jobs (%d → %d)", grew, rounds, proto.Size(before), proto.Size(after))
	}
	start := time.Now()
	out, err := exec.Command(c.bin, "status", "--coordinators", strings.Join(c.grpcAddrs(), ","),
		"--tls-dir", c.certDir(security.RoleAdmin, "test")).CombinedOutput()
	if err != nil || len(out) > 64<<10 || time.Since(start) > 20*time.Second {
		t.Errorf("ringtrain status after the giant jobs: %v, %d bytes of output in %v:\n%.2000s", err, len(out), time.Since(start), out)
	}
	// A new worker registers (as a standby: the job takes two) and leaves.
	w3 := c.clientAs(security.RoleWorker, "w3")
	if _, err := w3.Register(ctx(), &pb.RegisterRequest{WorkerId: "w3", Address: "127.0.0.1:1"}); err != nil {
		t.Errorf("a new worker cannot register after the giant jobs: %v", err)
	} else if err := w3.Leave(ctx(), &pb.LeaveRequest{WorkerId: "w3"}); err != nil {
		t.Errorf("the new worker cannot leave: %v", err)
	}
}

// attackOversizedModel submits, as an admin, the running job with a model of
// n_embd 1e9 (whose parameter count overflows) and of 1e6 (1.2e13 parameters),
// through the coordinator client (bypassing the check 'ringtrain submit' runs)
// and through 'ringtrain submit'. Without the check before Raft the job would
// replace the running one and every worker would try to allocate it.
func attackOversizedModel(t *testing.T, c *cluster, ctx func() context.Context) {
	t.Helper()
	before := c.leaderStatus()
	job := before.GetState().GetJob()
	var spec map[string]any
	if err := json.Unmarshal(job.GetSpecJson(), &spec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		embd int
		want string
	}{
		{1_000_000_000, "overflows"},
		{1_000_000, "exceed the limit of 17179869184"}, // past the hard limit (2^34)
		{12_288, "exceed the limit of 2147483648"},     // 4.2e9 parameters: past the default --max-params (2^31)
	} {
		bad := maps.Clone(spec)
		m := maps.Clone(spec["model"].(map[string]any))
		m["n_embd"] = tc.embd
		bad["model"] = m
		b, err := json.Marshal(bad)
		if err != nil {
			t.Fatal(err)
		}
		j := proto.CloneOf(job)
		j.SpecJson = b
		err = c.cl.SubmitJob(ctx(), &pb.SubmitJobRequest{Job: j, Replace: true})
		msg := errString(err)
		if !errors.Is(err, coordinator.ErrBadCommand) || !strings.Contains(msg, fmt.Sprintf("embd=%d", tc.embd)) || !strings.Contains(msg, tc.want) {
			t.Errorf("a job with n_embd %d: %v, want coordinator.ErrBadCommand naming embd=%d and %q", tc.embd, err, tc.embd, tc.want)
		}
	}
	yaml := filepath.Join(c.dir, "giant-model.yaml")
	orig, err := os.ReadFile(c.job)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(yaml, bytes.Replace(orig, []byte("embd: 96"), []byte("embd: 1000000000"), 1), 0o644)
	out, err := exec.Command(c.bin, "submit", yaml, "--replace", "--timeout", "10s", "--coordinators", strings.Join(c.grpcAddrs(), ","),
		"--tls-dir", c.certDir(security.RoleAdmin, "test")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "embd=1000000000") {
		t.Errorf("ringtrain submit of a model with embd 1e9: %v, want a refusal naming embd:\n%s", err, out)
	}
	after := c.leaderStatus()
	if after.GetState().GetJobVersion() != before.GetState().GetJobVersion() || !proto.Equal(after.GetState().GetJob(), job) {
		t.Errorf("the running job changed after the oversized models were refused (version %d → %d)",
			before.GetState().GetJobVersion(), after.GetState().GetJobVersion())
	}
}

// rawCodec sends []byte messages as they are and protobuf messages encoded,
// under the ring links' content subtype.
type rawCodec struct{}

func (rawCodec) Name() string { return "ringtrain-frame" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	return nil, fmt.Errorf("rawCodec: %T", v)
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

// peerConn dials worker id's peer gRPC server with the certificate of worker as.
func (c *cluster) peerConn(t *testing.T, id, as string) *grpc.ClientConn {
	t.Helper()
	st, err := security.LoadDir(c.certDir(security.RoleWorker, as), nil)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(c.worker(id).addr, grpc.WithTransportCredentials(st.ClientCredentials(security.Expect{Roles: []security.Role{security.RoleWorker}})),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// laneConn opens a lane connection to worker id with the certificate of worker
// as, TLS handshake done.
func (c *cluster) laneConn(id, as string) (*tls.Conn, error) {
	st, err := security.LoadDir(c.certDir(security.RoleWorker, as), nil)
	if err != nil {
		return nil, err
	}
	raw, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.worker(id).dataPort)), 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, st.ClientConfig(security.Expect{Roles: []security.Role{security.RoleWorker}}))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

// attackHugeFirstMessages sends, with member w0's valid certificate, a 250 MiB
// first message to w1's peer gRPC server (a ring link's hello) and to its lane
// port. Without the 64 KiB message limit of the TLS peer server, gRPC would read
// and allocate the whole message (up to the 256 MiB a frame may be) before the
// handler saw it; the lane reads its 17-byte handshake and nothing more. Both
// must be refused within seconds, having read a small part, and w1's resident
// memory must not grow by the message's size.
func attackHugeFirstMessages(t *testing.T, c *cluster) {
	t.Helper()
	const huge = 250 << 20
	pid := c.worker("w1").p.cmd.Process.Pid
	rssBefore, peakBefore := memOf(pid)

	msg := make([]byte, huge)
	cc := c.peerConn(t, "w1", "w0")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	start := time.Now()
	s, err := cc.NewStream(sctx, &pb.RingLink_ServiceDesc.Streams[0], pb.RingLink_Open_FullMethodName)
	if err == nil {
		err = s.SendMsg(msg)
		if err == nil || errors.Is(err, io.EOF) {
			err = s.RecvMsg(new(pb.RingWelcome))
		}
	}
	cancel()
	took := time.Since(start)
	if status.Code(err) != codes.ResourceExhausted || took > 15*time.Second {
		t.Errorf("a 250 MiB first message on w1's peer gRPC server: %v after %v, want ResourceExhausted within 15s", err, took)
	}

	tc, err := c.laneConn("w1", "w0")
	if err != nil {
		t.Fatalf("lane connection to w1 with w0's certificate: %v", err)
	}
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	start, sent := time.Now(), 0
	for sent < huge {
		n, err := tc.Write(msg[sent:min(sent+1<<20, huge)])
		sent += n
		if err != nil {
			break
		}
	}
	tc.Close()
	took = time.Since(start)
	if sent >= huge || took > 15*time.Second {
		t.Errorf("w1's lane port took %d MiB of a 250 MiB first message in %v; want it refused within 15s", sent>>20, took)
	}
	msg = nil
	rssAfter, peakAfter := memOf(pid)
	t.Logf("huge first messages: w1's RSS %d → %d MiB, peak %d → %d MiB; the lane took %d MiB before it was closed",
		rssBefore>>20, rssAfter>>20, peakBefore>>20, peakAfter>>20, sent>>20)
	if peakBefore == 0 || peakAfter-peakBefore > 128<<20 {
		t.Errorf("w1's peak resident memory grew from %d to %d MiB across the 250 MiB first messages", peakBefore>>20, peakAfter>>20)
	}
}

// memOf returns the resident set size of process pid and its peak, in bytes
// (VmRSS and VmHWM of /proc/PID/status; 0 if unknown).
func memOf(pid int) (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		key, rest, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		switch key {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

// openFDs counts the open file descriptors of process pid.
func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// attackLinkFlood opens, with the valid certificate of w9 (a worker of the
// cluster's CA that is in no plan), 3,000 lane connections held in their
// handshake and 3,000 ring links for generations ahead of w1's (which w1 parks
// until it gets there) to w1. Without the cap of 32 lane connections of one host
// in their handshake and of 4 open links per member, w1 would hold a goroutine
// and a descriptor per lane connection for the 10 s handshake deadline, and a
// goroutine, a stream and a lane token per link for as long as the dialler
// likes; with them, its descriptors stay bounded and training goes on once thaw
// (which lets a frozen peer run again) has been called.
func attackLinkFlood(t *testing.T, c *cluster, thaw func()) {
	t.Helper()
	const attempts = 3000
	pid := c.worker("w1").p.cmd.Process.Pid
	fdsBefore, stepBefore := openFDs(pid), c.status().GetProgress().GetStep()
	gen := c.status().GetPlan().GetGeneration()

	// Lanes: connections that never start their handshake, held open.
	start := time.Now()
	var conns []net.Conn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	laneAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.worker("w1").dataPort))
	for range attempts {
		cn, err := net.DialTimeout("tcp", laneAddr, 5*time.Second)
		if err != nil {
			continue
		}
		conns = append(conns, cn)
	}
	time.Sleep(500 * time.Millisecond)
	fdsDuring := openFDs(pid)
	// The worker closed every connection beyond the cap at once: count those
	// that read EOF (or a reset) within a moment.
	closed := 0
	for _, cn := range conns {
		cn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, err := cn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	t.Logf("link flood: w1 holds %d descriptors (%d before) under %d lane connections, %d closed by w1 (%v)",
		fdsDuring, fdsBefore, len(conns), closed, time.Since(start).Round(time.Millisecond))
	if len(conns) < attempts/2 || fdsDuring > fdsBefore+100 {
		t.Errorf("w1 holds %d file descriptors under a flood of %d lane connections (%d before)", fdsDuring, len(conns), fdsBefore)
	}
	if closed < len(conns)-64 {
		t.Errorf("w1 closed only %d of %d lane connections held in their handshake", closed, len(conns))
	}
	for _, cn := range conns {
		cn.Close()
	}
	conns = nil
	if log := readFile(filepath.Join(c.dir, "w1.0.log")); !strings.Contains(log, "too many lanes of this host in their handshake") {
		t.Error("w1's log does not report lane connections refused over the cap")
	}

	// Ring links: each of its own far generation, held open until the end.
	start = time.Now()
	cc := c.peerConn(t, "w1", "w9")
	fctx, fcancel := context.WithCancel(context.Background())
	defer fcancel()
	opened, capped, stalled := 0, 0, 0
	var other []error
	for i := 0; i < attempts && stalled < 3; i++ {
		// An attempt the server does not answer within 2 s (its streams per
		// connection are all taken) counts as stalled; an opened link is held
		// until the end.
		sctx, scancel := context.WithCancel(fctx)
		var timedOut atomic.Bool
		timer := time.AfterFunc(2*time.Second, func() { timedOut.Store(true); scancel() })
		s, err := cc.NewStream(sctx, &pb.RingLink_ServiceDesc.Streams[0], pb.RingLink_Open_FullMethodName)
		if err == nil {
			err = s.SendMsg(&pb.RingHello{Protocol: 1, Generation: gen + 1000 + uint64(i), From: "w9", To: "w1", Lanes: 2})
		}
		if err == nil {
			err = s.RecvMsg(new(pb.RingWelcome))
		}
		timer.Stop()
		switch {
		case timedOut.Load():
			stalled++
		case err == nil:
			opened++
			continue
		case status.Code(err) == codes.ResourceExhausted:
			capped++
		case status.Code(err) == codes.Unavailable && c.status().GetProgress().GetStep() >= faultSteps:
			// The job ended and w1 with it.
			scancel()
			i = attempts
		default:
			if len(other) < 5 {
				other = append(other, err)
			}
		}
		scancel()
	}
	t.Logf("link flood: %d ring links opened, %d refused as over the cap, %d stalled, others: %v (%v)",
		opened, capped, stalled, other, time.Since(start).Round(time.Millisecond))
	if opened > 4 || capped < 100 || len(other) > 0 {
		t.Errorf("%d of %d ring links from w9 were opened (%d refused over the cap, %d stalled, others %v), want at most 4 and the rest refused",
			opened, attempts, capped, stalled, other)
	}
	fcancel()
	cc.Close()

	// Training goes on (or has finished).
	thaw()
	deadline := time.Now().Add(60 * time.Second)
	for {
		step := c.status().GetProgress().GetStep()
		if step > stepBefore || step >= faultSteps {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("training stalled at step %d under the link flood", step)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// attackCraftedConfig runs eval, generate and export on a copy of checkpoint
// ckpt whose config.json claims a model of 1.5e9 parameters against the small
// model.safetensors. Without the check of the config against the weights'
// header before allocating, each would allocate about 6 GiB (and the AdamW
// moments twice that) before finding the tensors missing; with it, each exits
// non-zero at once with an error naming the file, in little memory.
func attackCraftedConfig(t *testing.T, c *cluster, ckpt, data string) {
	t.Helper()
	dir := filepath.Join(c.dir, "crafted-checkpoint")
	if err := os.CopyFS(dir, os.DirFS(ckpt)); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["n_layer"], cfg["n_head"], cfg["n_embd"] = 48, 25, 1600
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The attacker lists the new config.json in SHA256SUMS too, so that the
	// checksums pass and the config reaches the reader.
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for line := range strings.Lines(string(sums)) {
		if strings.HasSuffix(strings.TrimSpace(line), " config.json") {
			line = fmt.Sprintf("%x  config.json\n", sha256.Sum256(b))
		}
		lines = append(lines, line)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Every command runs with its address space limited to 2 GiB: enough for
	// the real checkpoint, far from the 5.9 GiB of weights (and twice that of
	// AdamW moments) the crafted config claims. A reader that allocated before
	// checking would die with the runtime's "out of memory" instead of an error.
	limited := func(ctx context.Context, args ...string) *exec.Cmd {
		argv := []string{"-c", `ulimit -v 2097152 && exec "$@"`, "sh"}
		if timeBin, err := exec.LookPath("time"); err == nil {
			argv = append(argv, timeBin, "-f", "maxrss_kb=%M")
		}
		return exec.CommandContext(ctx, "sh", append(append(argv, c.bin), args...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	out, err := limited(ctx, "eval", "--checkpoint", ckpt, "--data", data, "--batches", "1").CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("ringtrain eval on the real checkpoint within 2 GiB of address space: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"eval", "--checkpoint", dir, "--data", data, "--batches", "1"},
		{"generate", "--checkpoint", dir, "--max-tokens", "4"},
		{"export", "--checkpoint", dir, "--out", filepath.Join(c.dir, "crafted-export")},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		start := time.Now()
		out, err := limited(ctx, args...).CombinedOutput()
		took := time.Since(start)
		cancel()
		var exit *exec.ExitError
		switch {
		case !errors.As(err, &exit) || exit.ExitCode() <= 0:
			t.Errorf("ringtrain %s on a crafted config.json: %v, want a non-zero exit:\n%s", args[0], err, out)
		case strings.Contains(string(out), "fatal error") || strings.Contains(string(out), "panic"):
			t.Errorf("ringtrain %s on a crafted config.json crashed:\n%.3000s", args[0], out)
		case !strings.Contains(string(out), "model.safetensors") || !strings.Contains(string(out), "config needs"):
			t.Errorf("ringtrain %s on a crafted config.json: the error does not name the weights file and the tensor the config needs:\n%s", args[0], out)
		case took > 30*time.Second:
			t.Errorf("ringtrain %s on a crafted config.json took %v", args[0], took)
		}
		if i := strings.LastIndex(string(out), "maxrss_kb="); i >= 0 {
			kb, _ := strconv.Atoi(strings.TrimSpace(string(out[i+len("maxrss_kb="):])))
			t.Logf("ringtrain %s on a crafted config.json: %v, max RSS %d MiB: %s", args[0], took, kb>>10, firstLine(out))
			if kb > 1<<20 {
				t.Errorf("ringtrain %s on a crafted config.json peaked at %d MiB resident", args[0], kb>>10)
			}
		}
	}
}

// leaderStatus is the leader's StatusResponse (term, replicas, state).
func (c *cluster) leaderStatus() *pb.StatusResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.cl.Status(ctx, false)
	if err != nil {
		c.t.Fatalf("status from the leader: %v", err)
	}
	return st
}

// clientAs is a coordinator client with the certificate of role and id.
func (c *cluster) clientAs(role security.Role, id string) *coordinator.Client {
	c.t.Helper()
	st, err := security.LoadDir(c.certDir(role, id), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	cl, err := coordinator.NewClient(c.grpcAddrs(), coordinator.ClientOptions{TLS: st})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// firstLine is the first line of out.
func firstLine(out []byte) string {
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}
