package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/security"
)

// TestCertifiedID is the choice of a process's id: one the user gave stays, else
// the certificate's, else the environment's default; a certificate of another
// role is an error that names it.
func TestCertifiedID(t *testing.T) {
	ca, err := security.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	store := func(role security.Role, id string) *security.Store {
		st, err := ca.Store(security.Identity{Role: role, ID: id}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	worker := store(security.RoleWorker, "ringtrain-worker-0-x7k2q")
	for _, tc := range []struct {
		name    string
		role    security.Role
		id      string
		given   bool
		st      *security.Store
		want    string
		wantErr string
	}{
		{"no TLS: the environment's default", security.RoleWorker, "ringtrain-worker-0", false, nil, "ringtrain-worker-0", ""},
		{"TLS: the certificate's id over the environment's", security.RoleWorker, "ringtrain-worker-0", false, worker, "ringtrain-worker-0-x7k2q", ""},
		{"TLS: a given id stays (the worker checks it against the certificate)", security.RoleWorker, "w9", true, worker, "w9", ""},
		{"coordinator", security.RoleCoordinator, "host", false, store(security.RoleCoordinator, "ringtrain-coordinator-1"), "ringtrain-coordinator-1", ""},
		{"a coordinator's certificate on a worker", security.RoleWorker, "host", false, store(security.RoleCoordinator, "c0"), "", "ringtrain://coordinator/c0"},
		{"an admin's certificate on a coordinator", security.RoleCoordinator, "host", false, store(security.RoleAdmin, "alice"), "", "ringtrain://admin/alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := certifiedID(tc.role, tc.id, tc.given, tc.st)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "--tls-dir")):
				t.Errorf("error %v, want one naming --tls-dir and %s", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case got != tc.want:
				t.Errorf("id %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWorkerIDFromCertificate runs `ringtrain worker --tls-dir` without --id in an
// Indexed Job's pod (JOB_COMPLETION_INDEX set, so the environment's default is the
// host name) against a TLS cluster: it registers as the worker its certificate
// names, as a pod with a certificate of its own pod name (cert-manager's
// csi-driver) must. With an --id that the certificate does not name it refuses to
// start.
func TestWorkerIDFromCertificate(t *testing.T) {
	ca, err := security.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := coordinator.MakeCluster(t, 1, coordinator.WithTLS(t, ca))
	c.Leader()
	node := c.Node(0)
	const certID = "ringtrain-worker-1-b8d4z"
	is, err := ca.Issue(security.Identity{Role: security.RoleWorker, ID: certID}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := is.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOB_COMPLETION_INDEX", "1")
	t.Setenv("POD_NAME", "not-the-id")

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"--log-level", "warn", "worker", "--tls-dir", dir, "--coordinators", c.GRPCAddrs()[0],
		"--listen", addr, "--advertise", addr})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	registered := func() []string {
		var ids []string
		for _, w := range node.State().GetWorkers() {
			ids = append(ids, w.GetId())
		}
		return ids
	}
	coordinator.WaitFor(t, 10*time.Second, certID+" registered", func() bool { return slices.Contains(registered(), certID) })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopped worker: %v\n%s", err, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not stop")
	}
	if ids := registered(); slices.ContainsFunc(ids, func(id string) bool { return id != certID }) {
		t.Errorf("registered workers %v: only %s should have been", ids, certID)
	}

	_, err = ringtrain(t, "worker", "--tls-dir", dir, "--id", "ringtrain-worker-1", "--coordinators", c.GRPCAddrs()[0],
		"--listen", addr, "--advertise", addr)
	if err == nil || !strings.Contains(err.Error(), certID) {
		t.Errorf("--id other than the certificate's: %v, want an error naming the certificate's %s", err, certID)
	}
}
