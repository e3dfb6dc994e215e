package security

import (
	"errors"
	"testing"
)

func TestPolicyDecide(t *testing.T) {
	p := Policy{
		"/svc/Register": {RoleWorker: "worker_id"},
		"/svc/Submit":   {RoleAdmin: ""},
		"/svc/Status":   Anyone(),
		"/svc/Join":     {RoleCoordinator: "id"},
		"/svc/Fail":     {RoleWorker: "worker_id", RoleAdmin: ""},
	}
	claims := func(kv ...string) Claimed {
		return func(f string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == f {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	w3 := Identity{RoleWorker, "w3"}
	admin := Identity{RoleAdmin, "alice"}
	c1 := Identity{RoleCoordinator, "c1"}
	reader := Identity{RoleReader, "grafana"}
	for _, tc := range []struct {
		method string
		who    Identity
		claim  Claimed
		ok     bool
	}{
		{"/svc/Register", w3, claims("worker_id", "w3"), true},
		{"/svc/Register", w3, claims("worker_id", "w4"), false},
		{"/svc/Register", w3, claims(), false}, // no field to check: refused
		{"/svc/Register", admin, claims("worker_id", "alice"), false},
		{"/svc/Submit", admin, claims(), true},
		{"/svc/Submit", w3, claims(), false},
		{"/svc/Submit", c1, claims(), false},
		{"/svc/Submit", reader, claims(), false},
		{"/svc/Status", reader, claims(), true},
		{"/svc/Status", w3, claims(), true},
		{"/svc/Join", c1, claims("id", "c1"), true},
		{"/svc/Join", c1, claims("id", "c2"), false},
		{"/svc/Join", Identity{RoleWorker, "c1"}, claims("id", "c1"), false},
		{"/svc/Join", admin, claims("id", "alice"), false},
		{"/svc/Fail", admin, claims("worker_id", "w9"), true},
		{"/svc/Fail", w3, claims("worker_id", "w9"), false},
		{"/svc/Unknown", admin, claims(), false}, // default deny
	} {
		err := p.Decide(tc.method, tc.who, tc.claim)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrDenied)) {
			t.Errorf("Decide(%s, %s) = %v, want ok=%v", tc.method, tc.who, err, tc.ok)
		}
	}
}

func TestMergeRefusesDuplicates(t *testing.T) {
	if _, err := Merge(Policy{"/a": Anyone()}, Policy{"/a": {RoleAdmin: ""}}); err == nil {
		t.Fatal("Merge of two rules for one method succeeded")
	}
	p, err := Merge(Policy{"/a": Anyone()}, Policy{"/b": {RoleAdmin: ""}})
	if err != nil || len(p.Methods()) != 2 {
		t.Fatalf("Merge = %v, %v", p.Methods(), err)
	}
}
