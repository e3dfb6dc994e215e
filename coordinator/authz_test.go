package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// TestPolicyTable: who may call each method of the coordinator.
func TestPolicyTable(t *testing.T) {
	p := Policy()
	svc := "/" + pb.Coordinator_ServiceDesc.ServiceName + "/"
	// Every method of the service has a rule.
	for _, m := range pb.Coordinator_ServiceDesc.Methods {
		if _, ok := p[svc+m.MethodName]; !ok {
			t.Errorf("no rule for %s", m.MethodName)
		}
	}
	for _, m := range pb.Coordinator_ServiceDesc.Streams {
		if _, ok := p[svc+m.StreamName]; !ok {
			t.Errorf("no rule for %s", m.StreamName)
		}
	}
	w3 := security.Identity{Role: security.RoleWorker, ID: "w3"}
	c1 := security.Identity{Role: security.RoleCoordinator, ID: "c1"}
	admin := security.Identity{Role: security.RoleAdmin, ID: "alice"}
	reader := security.Identity{Role: security.RoleReader, ID: "grafana"}
	field := func(name, v string) security.Claimed {
		return func(f string) (string, bool) { return v, f == name }
	}
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct {
		method string
		who    security.Identity
		claim  security.Claimed
		ok     bool
	}{
		{"Register", w3, field("worker_id", "w3"), true},
		{"Register", w3, field("worker_id", "w4"), false},
		{"Register", admin, field("worker_id", "alice"), false},
		{"Register", c1, field("worker_id", "c1"), false},
		{"Heartbeat", w3, field("worker_id", "w3"), true},
		{"Heartbeat", w3, field("worker_id", "w0"), false},
		{"Leave", w3, field("worker_id", "w3"), true},
		{"Leave", w3, field("worker_id", "w0"), false},
		{"Leave", admin, field("worker_id", "w0"), false},
		{"ReportPeerLost", w3, field("worker_id", "w3"), true},
		{"ReportPeerLost", w3, field("worker_id", "w1"), false},
		{"ReportProgress", w3, field("worker_id", "w3"), true},
		{"ReportProgress", w3, field("worker_id", "w1"), false},
		{"CommitCheckpoint", w3, field("worker_id", "w3"), true},
		{"CommitCheckpoint", w3, field("worker_id", "w1"), false},
		{"CommitCheckpoint", admin, field("worker_id", "w1"), false},
		{"FailJob", w3, field("worker_id", "w3"), true},
		{"FailJob", w3, field("worker_id", "w1"), false},
		{"FailJob", admin, field("worker_id", ""), true},
		{"FailJob", reader, none, false},
		{"WatchPlan", w3, field("worker_id", "w3"), true},
		{"WatchPlan", w3, field("worker_id", "w1"), false},
		{"WatchPlan", reader, none, true},
		{"SubmitJob", admin, none, true},
		{"SubmitJob", w3, none, false},
		{"SubmitJob", c1, none, false},
		{"SubmitJob", reader, none, false},
		{"RemoveServer", admin, none, true},
		{"RemoveServer", c1, none, false},
		{"RemoveServer", w3, none, false},
		{"AddVoter", c1, field("id", "c1"), true},
		{"AddVoter", c1, field("id", "c2"), false},
		{"AddVoter", security.Identity{Role: security.RoleWorker, ID: "c2"}, field("id", "c2"), false},
		{"AddVoter", admin, field("id", "c2"), false},
		{"Status", reader, none, true},
		{"Status", w3, none, true},
		{"Status", c1, none, true},
		{"Status", admin, none, true},
		{"Leader", reader, none, true},
	} {
		err := p.Decide(svc+tc.method, tc.who, tc.claim)
		if (err == nil) != tc.ok {
			t.Errorf("%s by %s: %v, want allowed=%v", tc.method, tc.who, err, tc.ok)
		}
	}
	if err := p.Decide("/grpc.health.v1.Health/Check", reader, none); err != nil {
		t.Errorf("health check by a reader: %v", err)
	}
}

// TestClusterTLS: three replicas over mutual TLS elect a leader and record every
// replica (AddVoter by each follower's own coordinator certificate); an admin
// submits; a worker certificate acts only for itself and cannot submit or add a
// voter; clients without a certificate or with one of another CA, and a Raft
// connection without a coordinator certificate, are refused.
func TestClusterTLS(t *testing.T) {
	ca, err := security.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := MakeCluster(t, 3, WithTLS(t, ca))
	store := func(ca *security.CA, role security.Role, id string) *security.Store {
		st, err := ca.Store(security.Identity{Role: role, ID: id}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	admin := c.ClientWith(store(ca, security.RoleAdmin, "alice"))
	w1 := c.ClientWith(store(ca, security.RoleWorker, "w1"))
	c.Leader()
	c.WaitFor("every replica's gRPC address recorded", func() bool {
		st, err := admin.Status(c.Ctx(2*time.Second), false)
		if err != nil {
			return false
		}
		for _, r := range st.GetReplicas() {
			if r.GetGrpcAddr() == "" {
				return false
			}
		}
		return len(st.GetReplicas()) == 3
	})
	submitJob(t, c, admin, 4)

	denied := func(what string, err error) {
		t.Helper()
		if status.Code(errors.Unwrap(err)) != codes.PermissionDenied && status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", what, err)
		}
	}
	if _, err := w1.Register(c.Ctx(5*time.Second), &pb.RegisterRequest{WorkerId: "w1", Address: "127.0.0.1:9"}); err != nil {
		t.Fatalf("register as itself: %v", err)
	}
	_, err = w1.Register(c.Ctx(5*time.Second), &pb.RegisterRequest{WorkerId: "w2", Address: "127.0.0.1:9"})
	denied("register as another worker", err)
	denied("leave as another worker", w1.Leave(c.Ctx(5*time.Second), &pb.LeaveRequest{WorkerId: "w0"}))
	denied("submit by a worker", w1.SubmitJob(c.Ctx(5*time.Second), &pb.SubmitJobRequest{Job: &pb.JobSpec{SpecJson: []byte(`{}`), Streams: 2, Steps: 1}, Replace: true}))
	denied("add voter by a worker", w1.AddVoter(c.Ctx(5*time.Second), "w1", "127.0.0.1:1", "127.0.0.1:2"))
	c9 := c.ClientWith(store(ca, security.RoleCoordinator, "c9"))
	denied("add voter for another id", c9.AddVoter(c.Ctx(5*time.Second), "c8", "127.0.0.1:1", "127.0.0.1:2"))
	denied("remove server by a coordinator", c9.RemoveServer(c.Ctx(5*time.Second), "c2"))
	if _, err := w1.Status(c.Ctx(5*time.Second), true); err != nil {
		t.Errorf("status by a worker: %v", err)
	}

	// No certificate, or one of another CA: the handshake fails, every attempt.
	for name, cl := range map[string]*Client{
		"no certificate": c.Client(),
		"another CA":     c.ClientWith(store(mustCA(t), security.RoleAdmin, "alice")),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		_, err := cl.Status(ctx, true)
		cancel()
		if err == nil {
			t.Errorf("%s: status answered", name)
		}
	}
	// Raft: a worker certificate is refused in the handshake; TLS 1.3 reports a
	// refused client certificate on the client's first read.
	wst := store(ca, security.RoleWorker, "w1")
	raw, err := net.Dial("tcp", c.RaftAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, wst.ClientConfig(security.Expect{Roles: security.AnyMember}))
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b [1]byte
	if _, err := conn.Read(b[:]); err == nil {
		t.Error("a worker certificate read from the Raft port")
	}
	conn.Close()
}

func mustCA(t *testing.T) *security.CA {
	t.Helper()
	ca, err := security.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestCertificateRotation: a replica reading its certificate from a directory
// presents the new one on the next connection after the files are replaced,
// without a restart, and keeps serving its clients.
func TestCertificateRotation(t *testing.T) {
	ca, err := security.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	issue := func() *x509.Certificate {
		is, err := ca.Issue(security.Identity{Role: security.RoleCoordinator, ID: "c0"}, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := is.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(is.CertPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	first := issue()
	st, err := security.LoadDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := MakeCluster(t, 1, func(cfg *Config) { cfg.TLS = st })
	c.Leader()
	admin, err := ca.Store(security.Identity{Role: security.RoleAdmin, ID: "ops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	presented := func() *big.Int {
		conn, err := tls.Dial("tcp", c.GRPCAddrs()[0], admin.ClientConfig(coordinatorPeer, "h2"))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	if got := presented(); got.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("serves serial %v, want the first certificate's %v", got, first.SerialNumber)
	}
	second := issue()
	c.WaitFor("the rotated certificate", func() bool { return presented().Cmp(second.SerialNumber) == 0 })
	if _, err := c.ClientWith(admin).Status(c.Ctx(5*time.Second), false); err != nil {
		t.Fatalf("status after the rotation: %v", err)
	}
}
