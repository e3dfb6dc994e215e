package security

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustStore(t *testing.T, ca *CA, who Identity) *Store {
	t.Helper()
	st, err := ca.Store(who, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// handshake runs one TLS handshake between a client and a server over loopback
// and returns the identities each saw, or the errors.
func handshake(t *testing.T, srv, cli *tls.Config) (server, client Identity, serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		server, serr = Handshake(context.Background(), tc, 5*time.Second)
		if serr == nil {
			// TLS 1.3 clients learn of a refused certificate only on their first read.
			tc.Write([]byte{1})
		}
	})
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var tc *tls.Conn
	tc, client, cerr = DialConn(context.Background(), raw, cli, 5*time.Second)
	if cerr == nil {
		var b [1]byte
		if _, err := tc.Read(b[:]); err != nil {
			cerr = err
		}
		tc.Close()
	}
	wg.Wait()
	return
}

func TestMutualTLS(t *testing.T) {
	ca := mustCA(t)
	c0 := mustStore(t, ca, Identity{RoleCoordinator, "c0"})
	w3 := mustStore(t, ca, Identity{RoleWorker, "w3"})
	other := mustStore(t, mustCA(t), Identity{RoleWorker, "w3"})

	s, c, serr, cerr := handshake(t, c0.ServerConfig(AnyMember), w3.ClientConfig(Expect{Roles: []Role{RoleCoordinator}}))
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if s != (Identity{RoleWorker, "w3"}) || c != (Identity{RoleCoordinator, "c0"}) {
		t.Fatalf("identities: server saw %v, client saw %v", s, c)
	}
	if st := c0.ServerConfig(nil); st.MinVersion != tls.VersionTLS13 {
		t.Fatalf("MinVersion %x", st.MinVersion)
	}

	for name, tc := range map[string]struct{ srv, cli *tls.Config }{
		"client of another CA":    {c0.ServerConfig(AnyMember), other.ClientConfig(Expect{Roles: AnyMember})},
		"server of another CA":    {other.ServerConfig(AnyMember), w3.ClientConfig(Expect{Roles: AnyMember})},
		"client role not allowed": {c0.ServerConfig([]Role{RoleCoordinator}), w3.ClientConfig(Expect{Roles: AnyMember})},
		"server role unexpected":  {c0.ServerConfig(AnyMember), w3.ClientConfig(Expect{Roles: []Role{RoleWorker}})},
		"server id unexpected":    {c0.ServerConfig(AnyMember), w3.ClientConfig(Expect{Roles: []Role{RoleCoordinator}, ID: "c1"})},
		"client without certificate": {c0.ServerConfig(AnyMember), &tls.Config{
			MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}},
		"TLS 1.2 client": {c0.ServerConfig(AnyMember), func() *tls.Config {
			c := w3.ClientConfig(Expect{Roles: AnyMember})
			c.MaxVersion = tls.VersionTLS12
			return c
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, serr, cerr := handshake(t, tc.srv, tc.cli)
			if serr == nil && cerr == nil {
				t.Fatal("handshake succeeded")
			}
			t.Logf("server: %v; client: %v", serr, cerr)
		})
	}
}

func TestWrongRoleErrorsAreDenied(t *testing.T) {
	ca := mustCA(t)
	c0 := mustStore(t, ca, Identity{RoleCoordinator, "c0"})
	w3 := mustStore(t, ca, Identity{RoleWorker, "w3"})
	_, _, serr, _ := handshake(t, c0.ServerConfig([]Role{RoleCoordinator}), w3.ClientConfig(Expect{Roles: AnyMember}))
	if !errors.Is(serr, ErrDenied) {
		t.Fatalf("server error %v, want ErrDenied", serr)
	}
}

// TestRotation replaces a directory's certificate (and then its CA) under a
// running store: the next handshake after ReloadInterval uses the new files.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	issue := func(ca *CA, who Identity) {
		is, err := ca.Issue(who, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := is.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	issue(ca, Identity{RoleCoordinator, "c0"})
	st, err := LoadDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	st.now = func() time.Time { return clock }
	client := mustStore(t, ca, Identity{RoleAdmin, "alice"})
	_, got, _, cerr := handshake(t, st.ServerConfig(AnyMember), client.ClientConfig(Expect{Roles: AnyMember}))
	if cerr != nil || got.ID != "c0" {
		t.Fatalf("before rotation: %v, %v", got, cerr)
	}

	// The serial number of the certificate the server presents.
	serial := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var wg sync.WaitGroup
		defer wg.Wait() // the server reads the test's clock
		wg.Go(func() {
			c, err := ln.Accept()
			if err == nil {
				tls.Server(c, st.ServerConfig(AnyMember)).Handshake()
				c.Close()
			}
		})
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := DialConn(context.Background(), raw, client.ClientConfig(Expect{Roles: AnyMember}), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()

	// A new certificate of the same CA: picked up once the interval has passed.
	issue(ca, Identity{RoleCoordinator, "c0"})
	if got := serial(); got != first {
		t.Fatalf("reloaded before the interval: serial %s, want %s", got, first)
	}
	clock = clock.Add(ReloadInterval)
	second := serial()
	if second == first {
		t.Fatal("the rotated certificate is not used after the interval")
	}

	// A broken set (a key of another certificate) is refused and the old one kept,
	// and so is a certificate of another identity.
	other, _ := ca.Issue(Identity{RoleCoordinator, "x"}, nil, time.Hour)
	if err := writeAtomic(filepath.Join(dir, KeyFile), other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(ReloadInterval)
	if got := serial(); got != second {
		t.Fatalf("after a broken rotation: serial %s, want %s", got, second)
	}
	issue(ca, Identity{RoleCoordinator, "c9"})
	clock = clock.Add(ReloadInterval)
	if got := serial(); got != second || st.Identity() != (Identity{RoleCoordinator, "c0"}) {
		t.Fatalf("after a rotation to another identity: serial %s (want %s), identity %s", got, second, st.Identity())
	}
	if err := st.Reload(); !errors.Is(err, ErrMaterial) {
		t.Fatalf("Reload of another identity: %v", err)
	}

	// A new CA: clients of the old one are refused from then on.
	ca2 := mustCA(t)
	issue(ca2, Identity{RoleCoordinator, "c0"})
	clock = clock.Add(ReloadInterval)
	if _, _, serr, cerr := handshake(t, st.ServerConfig(AnyMember), client.ClientConfig(Expect{Roles: AnyMember})); serr == nil && cerr == nil {
		t.Fatal("a client of the old CA was accepted after the CA rotated")
	}
	client2 := mustStore(t, ca2, Identity{RoleAdmin, "alice"})
	if _, _, serr, cerr := handshake(t, st.ServerConfig(AnyMember), client2.ClientConfig(Expect{Roles: AnyMember})); serr != nil || cerr != nil {
		t.Fatalf("client of the new CA: %v, %v", serr, cerr)
	}
}

func TestLoadDirErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadDir(dir, nil); !errors.Is(err, ErrMaterial) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("empty dir: %v", err)
	}
	ca := mustCA(t)
	is, _ := ca.Issue(Identity{RoleWorker, "w0"}, nil, time.Hour)
	is.CAPEM = mustCA(t).CertPEM // a bundle that does not verify it
	is.WriteDir(dir)
	if _, err := LoadDir(dir, nil); !errors.Is(err, ErrMaterial) {
		t.Fatalf("foreign CA: %v", err)
	}
	if err := ca.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir, nil); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("CA directory as a process's certificate: %v", err)
	}
	back, err := LoadCA(dir)
	if err != nil || !back.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA: %v", err)
	}
}

// TestOpenSSL checks issued certificates with an independent implementation.
func TestOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: the certificates are checked by crypto/x509 only")
	}
	caDir, dir := t.TempDir(), t.TempDir()
	ca := mustCA(t)
	if err := ca.WriteDir(caDir); err != nil {
		t.Fatal(err)
	}
	ca, err = LoadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(Identity{RoleWorker, "w0"}, []string{"h1", "10.0.0.3"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := is.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, CAFile), filepath.Join(dir, CertFile)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	out, err = exec.Command(openssl, "x509", "-noout", "-text", "-in", filepath.Join(dir, CertFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	for _, want := range []string{"URI:ringtrain://worker/w0", "DNS:h1", "IP Address:10.0.0.3", "TLS Web Server Authentication", "TLS Web Client Authentication", "prime256v1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, out)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestIssueAll: a cluster's certificates are issued once; a rerun keeps them, and
// one about to expire (or of another identity) is issued again.
func TestIssueAll(t *testing.T) {
	caDir, out := filepath.Join(t.TempDir(), "ca"), t.TempDir()
	who := []Identity{{RoleCoordinator, "c0"}, {RoleWorker, "w0"}, {RoleAdmin, "ops"}}
	done, err := IssueAll(caDir, out, who, time.Hour, time.Minute)
	if err != nil || len(done) != 4 {
		t.Fatalf("first run: %v, %v", done, err)
	}
	for _, w := range who {
		st, err := LoadDir(filepath.Join(out, w.ID), nil)
		if err != nil || st.Identity() != w {
			t.Fatalf("%s: %v, %v", w, st, err)
		}
	}
	if done, err := IssueAll(caDir, out, who, time.Hour, time.Minute); err != nil || len(done) != 0 {
		t.Fatalf("rerun: %v, %v; want nothing done", done, err)
	}
	if done, err := IssueAll(caDir, out, who, time.Hour, 2*time.Hour); err != nil || len(done) != 3 {
		t.Fatalf("renewal: %v, %v; want the three certificates again", done, err)
	}
	if _, err := IssueAll(caDir, out, []Identity{{RoleWorker, "x"}, {RoleAdmin, "x"}}, time.Hour, 0); !errors.Is(err, ErrBadIdentity) {
		t.Fatalf("an id twice: %v", err)
	}
}
