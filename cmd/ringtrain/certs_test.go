package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/security"
)

// TestCertsCommands: `certs ca` and `certs issue` write the Secret layout that
// --tls-dir reads, with the identity in the URI SAN; openssl agrees where it is
// installed.
func TestCertsCommands(t *testing.T) {
	dir := t.TempDir()
	ca, out := filepath.Join(dir, "ca"), filepath.Join(dir, "w0")
	if _, err := ringtrain(t, "certs", "ca", "--out", ca); err != nil {
		t.Fatal(err)
	}
	if _, err := ringtrain(t, "certs", "issue", "--ca", ca, "--role", "worker", "--id", "w0", "--hosts", "h1,10.0.0.3", "--out", out); err != nil {
		t.Fatal(err)
	}
	st, err := security.LoadDir(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Identity(); got != (security.Identity{Role: security.RoleWorker, ID: "w0"}) {
		t.Errorf("issued %s, want ringtrain://worker/w0", got)
	}
	for _, bad := range [][]string{
		{"certs", "issue", "--ca", ca, "--role", "root", "--id", "w0", "--out", out},
		{"certs", "issue", "--ca", ca, "--role", "worker", "--id", "../x", "--out", out},
		{"certs", "issue", "--ca", out, "--role", "worker", "--id", "w1", "--out", out},
	} {
		if _, err := ringtrain(t, bad...); err == nil {
			t.Errorf("ringtrain %s: succeeded", strings.Join(bad, " "))
		}
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: checked with crypto/x509 only")
	}
	b, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(out, "ca.crt"), filepath.Join(out, "tls.crt")).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "OK") {
		t.Errorf("openssl verify: %v\n%s", err, b)
	}
	b, err = exec.Command(openssl, "x509", "-noout", "-text", "-in", filepath.Join(out, "tls.crt")).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "URI:ringtrain://worker/w0") || !strings.Contains(string(b), "IP Address:10.0.0.3") {
		t.Errorf("openssl x509 -text: %v\n%s", err, b)
	}
}

// TestPlaintextOffLoopback: without --tls-dir a coordinator or worker refuses to
// listen off loopback (a usage error naming the flag) unless --insecure;
// --tls-dir and --insecure together are refused too.
func TestPlaintextOffLoopback(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"coordinator", "--id", "c0", "--data-dir", filepath.Join(dir, "c0"), "--raft-addr", ":0", "--grpc-addr", "127.0.0.1:0"},
		{"worker", "--id", "w0", "--coordinators", "127.0.0.1:1", "--listen", "0.0.0.0:0", "--advertise", "10.0.0.1:7100"},
		{"worker", "--id", "w0", "--coordinators", "127.0.0.1:1", "--listen", "0.0.0.0:0", "--advertise", "10.0.0.1:7100",
			"--tls-dir", dir, "--insecure"},
	} {
		_, _, err := ringtrainErr(t, args...)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), "--") {
			t.Errorf("ringtrain %s: %v, want a usage error", strings.Join(args, " "), err)
		} else {
			t.Log(err)
		}
	}
	// --insecure: it starts (and stops when the context ends).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _, err := ringtrainCtx(ctx, t, "coordinator", "--id", "c0", "--data-dir", filepath.Join(dir, "c1"),
		"--raft-addr", "0.0.0.0:0", "--raft-advertise", "127.0.0.1:7000", "--grpc-addr", "127.0.0.1:0", "--insecure")
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("coordinator --insecure off loopback: %v", err)
	}
}

// TestInsecureWarns: --insecure off loopback serves plain text with a warning at
// start; on loopback no flag is needed and nothing is said.
func TestInsecureWarns(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	st, err := (&tlsFlags{insecure: true}).serve(log, map[string]string{"--listen": ":7100"})
	if st != nil || err != nil || !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "--insecure") {
		t.Errorf("--insecure: %v, %v; log %q, want a warning naming --insecure", st, err, buf.String())
	}
	buf.Reset()
	if st, err := (&tlsFlags{}).serve(log, map[string]string{"--listen": "127.0.0.1:7100"}); st != nil || err != nil || buf.Len() > 0 {
		t.Errorf("loopback without --tls-dir: %v, %v; log %q", st, err, buf.String())
	}
}
