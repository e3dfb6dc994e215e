package system_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// TestSecurity runs a TLS cluster of three coordinators and two workers as
// processes on loopback and, while it trains, checks that:
//
//   - a client without a certificate is refused on every port: coordinator gRPC,
//     Raft, worker peer gRPC and the all-reduce lanes (and openssl s_client, when
//     installed, sees the coordinator ask for a certificate and end the session);
//   - a worker's certificate cannot submit a job, add a voter, or register or
//     leave as another worker;
//   - a registration without a certificate is refused;
//   - a worker process with a certificate of another CA never registers, and
//     cannot link to a ring member's peer server or lanes;
//   - Raft refuses a worker's and an admin's certificate: a forged AppendEntries
//     of a far higher term is not answered and the leader's term is unchanged;
//   - neither an admin nor coordinator c0 can add a voter "c9" (no such
//     certificate): the configuration keeps its three voters;
//   - a job with a model of n_embd 1e9 or 1e6 is refused before Raft, naming the
//     field and the limit, and the running job stays;
//   - a 250 MiB first message, with a member's certificate, on a worker's peer
//     gRPC server and on its lane port is refused within seconds, and the
//     worker's resident memory does not grow by it;
//   - 3,000 ring links and 3,000 lane connections from one worker certificate are
//     capped (4 open links, 32 lanes in their handshake): the worker's file
//     descriptors stay bounded and training goes on;
//   - 24 jobs with 3 MiB paths are each refused with a short error naming the
//     field; the replicated state does not grow, 'ringtrain status' answers
//     small and fast, and a new worker still registers;
//
// and that the cluster then trains to the end with the audit passing. Finally
// eval, generate and export on a copy of the last checkpoint whose config.json
// claims a 1.5e9-parameter model fail at once, naming the file, in little memory.
// and that the cluster then trains to the end with the audit passing.
func TestSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	c := newCluster(t, 3, 2, 2)
	c.startWorker("w0")
	c.startWorker("w1")
	c.waitStep(20, 120*time.Second)

	ports := map[string]string{}
	for _, cp := range c.coords {
		ports[cp.id+" gRPC"] = cp.grpcAddr
		ports[cp.id+" Raft"] = cp.raftAddr
	}
	for _, id := range []string{"w0", "w1"} {
		wp := c.worker(id)
		ports[id+" peer gRPC"] = wp.addr
		ports[id+" lanes"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(wp.dataPort))
	}
	for name, addr := range ports {
		if err := refusedWithoutCert(addr); err != nil {
			t.Errorf("%s (%s): %v", name, addr, err)
		}
	}
	opensslRefuses(t, c.coords[0].grpcAddr)

	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	w0, err := security.LoadDir(c.certDir(security.RoleWorker, "w0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	asW0, err := coordinator.NewClient(c.grpcAddrs(), coordinator.ClientOptions{TLS: w0})
	if err != nil {
		t.Fatal(err)
	}
	defer asW0.Close()
	denied := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied && !strings.Contains(errString(err), "PermissionDenied") {
			t.Errorf("%s with w0's certificate: %v, want PermissionDenied", what, err)
		}
	}
	_, err = asW0.Register(ctx(), &pb.RegisterRequest{WorkerId: "w1", Address: "127.0.0.1:1"})
	denied("register as w1", err)
	denied("leave as w1", asW0.Leave(ctx(), &pb.LeaveRequest{WorkerId: "w1"}))
	denied("add a voter", asW0.AddVoter(ctx(), "w0", "127.0.0.1:1", "127.0.0.1:2"))
	denied("submit a job", asW0.SubmitJob(ctx(), &pb.SubmitJobRequest{Job: c.committed().GetJob(), Replace: true}))
	out, err := exec.Command(c.bin, "submit", c.job, "--replace", "--timeout", "10s", "--coordinators", strings.Join(c.grpcAddrs(), ","),
		"--tls-dir", c.certDir(security.RoleWorker, "w0")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PermissionDenied") {
		t.Errorf("ringtrain submit with w0's certificate: %v, want PermissionDenied:\n%s", err, out)
	}

	// No certificate: the registration never reaches the coordinator.
	rogue, err := coordinator.NewClient(c.grpcAddrs(), coordinator.ClientOptions{AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = rogue.Register(rctx, &pb.RegisterRequest{WorkerId: "w5", Address: "127.0.0.1:1"})
	rcancel()
	if err == nil {
		t.Error("a registration without a certificate was accepted")
	}

	// Another CA: a worker process that cannot register, and whose certificate
	// no ring member accepts.
	c.run("certs", "ca", "--out", c.tlsDir("other-ca"))
	otherDir := c.tlsDir("other-w2")
	c.run("certs", "issue", "--ca", c.tlsDir("other-ca"), "--role", "worker", "--id", "w2", "--out", otherDir)
	intruderStart := time.Now()
	intruder := startEnv(t, c.bin, c.dir, "w2-other-ca", nil, "worker", "--id", "w2",
		"--coordinators", strings.Join(c.grpcAddrs(), ","), "--listen", freeAddr(t), "--tls-dir", otherDir)
	other, err := security.LoadDir(otherDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"w0", "w1"} {
		wp := c.worker(id)
		for _, addr := range []string{wp.addr, net.JoinHostPort("127.0.0.1", strconv.Itoa(wp.dataPort))} {
			if err := refusedWith(addr, other.ClientConfig(security.Expect{Roles: security.AnyMember})); err != nil {
				t.Errorf("%s at %s with a certificate of another CA: %v", id, addr, err)
			}
		}
	}
	// Attacks with valid certificates of the cluster's CA, while it trains and
	// the intruder tries to register. The attacks on w1's ports need w1 running
	// a job that has not ended, however fast the machine trains: w0 is frozen
	// while they run (w1 waits for it in the ring, well within the ring timeout
	// and the lease) and thawed before training is checked to go on.
	frozen := func(attack func(thaw func())) func() {
		return func() {
			c.signal("w0", syscall.SIGSTOP)
			var once sync.Once
			thaw := func() { once.Do(func() { c.signal("w0", syscall.SIGCONT) }) }
			defer thaw()
			attack(thaw)
		}
	}
	for _, a := range []struct {
		name string
		run  func()
	}{
		{"forged Raft AppendEntries", func() { attackForgedRaft(t, c) }},
		{"bogus voter", func() { attackBogusVoter(t, c, ctx) }},
		{"oversized model", func() { attackOversizedModel(t, c, ctx) }},
		{"huge first messages", frozen(func(func()) { attackHugeFirstMessages(t, c) })},
		{"link flood", frozen(func(thaw func()) { attackLinkFlood(t, c, thaw) })},
		{"giant fields", func() { attackGiantFields(t, c, ctx) }},
	} {
		start, step := time.Now(), c.status().GetProgress().GetStep()
		a.run()
		t.Logf("attack %s: steps %d → %d of %d, %v", a.name, step, c.status().GetProgress().GetStep(), faultSteps, time.Since(start).Round(time.Millisecond))
	}

	time.Sleep(time.Until(intruderStart.Add(3 * time.Second))) // long enough for many registration attempts
	if st := c.status(); slices.ContainsFunc(st.GetWorkers(), func(w *pb.Worker) bool { return w.GetId() == "w2" }) ||
		slices.Contains(st.GetPlan().GetMembers(), "w2") {
		t.Error("the worker with a certificate of another CA registered")
	}
	// Stopped, it says why it never got anywhere.
	intruder.cmd.Process.Signal(syscall.SIGTERM)
	intruder.wait(t, 10*time.Second)
	if log := readFile(filepath.Join(c.dir, "w2-other-ca.log")); !strings.Contains(log, "untrusted certificate") {
		t.Errorf("the intruder's log does not say its certificate was refused:\n%s", log)
	}

	c.finish(180 * time.Second)
	c.check()
	cks := c.committed().GetCheckpoints()
	_, data := shared(t)
	attackCraftedConfig(t, c, cks[len(cks)-1].GetLocation(), data)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// refusedWithoutCert checks that addr serves nothing to a client without a
// certificate: neither a TLS client that presents none, nor plain text.
func refusedWithoutCert(addr string) error {
	if err := refusedWith(addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}); err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil // nothing listens: refused too
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(security.HandshakeTimeout + 5*time.Second))
	// An HTTP/2 preface (what a plain-text gRPC client sends) and a lane handshake's length.
	c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + strings.Repeat("\x00", 17)))
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	if n > 0 && buf[0] != 0x15 { // anything but a TLS alert record is an answer
		return &answered{what: "plain text", got: buf[:n]}
	}
	return nil
}

// refusedWith checks that a TLS client with cfg gets no application data from
// addr: the handshake or the first read fails.
func refusedWith(addr string, cfg *tls.Config) error {
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return nil
	}
	// gRPC servers speak first after the handshake (HTTP/2 settings); raw lanes
	// and Raft wait for the client: send a little so they answer or drop us.
	tc.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	buf := make([]byte, 64)
	n, err := tc.Read(buf)
	if err == nil && n > 0 {
		return &answered{what: "TLS without an accepted certificate", got: buf[:n]}
	}
	if err != nil && strings.Contains(err.Error(), "timeout") {
		return &answered{what: "TLS without an accepted certificate (held open)", got: nil}
	}
	return nil
}

type answered struct {
	what string
	got  []byte
}

func (a *answered) Error() string {
	return a.what + " was answered: " + strconv.Quote(string(a.got))
}

// opensslRefuses runs openssl s_client without a certificate against addr: the
// server asks for one and ends the session with an alert.
func opensslRefuses(t *testing.T, addr string) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl is not installed: the refusal is checked with crypto/tls only")
		return
	}
	// -ign_eof: keep reading after the input ends, until the server's alert.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-tls1_3", "-servername", "ringtrain", "-ign_eof")
	cmd.Stdin = strings.NewReader("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out, _ := cmd.CombinedOutput()
	s := string(out)
	if !strings.Contains(s, "Acceptable client certificate CA names") && !strings.Contains(s, "Requested Signature Algorithms") {
		t.Errorf("openssl s_client: the coordinator did not ask for a client certificate:\n%s", s)
	}
	if !strings.Contains(s, "certificate required") {
		t.Errorf("openssl s_client: the coordinator did not refuse the session for want of a certificate:\n%s", s)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
