package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

func TestIdentityFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want identity
	}{
		{"bare host", nil, identity{Name: "box", Ordinal: -1}},
		{"statefulset pod", map[string]string{"POD_NAME": "ringtrain-worker-3"},
			identity{Name: "ringtrain-worker-3", Ordinal: 3, OrdinalFrom: "name"}},
		{"pod-index label wins over the name", map[string]string{"POD_NAME": "ringtrain-worker-3", "POD_INDEX": "5"},
			identity{Name: "ringtrain-worker-3", Ordinal: 5, OrdinalFrom: "POD_INDEX"}},
		{"indexed job", map[string]string{"JOB_COMPLETION_INDEX": "2"},
			identity{Name: "box", Ordinal: 2, OrdinalFrom: "JOB_COMPLETION_INDEX"}},
		{"indexed job: the host name, not the pod name with its random suffix", map[string]string{"JOB_COMPLETION_INDEX": "2", "POD_NAME": "box-x7k2q"},
			identity{Name: "box", Ordinal: 2, OrdinalFrom: "JOB_COMPLETION_INDEX"}},
		{"pytorchjob worker", map[string]string{"POD_NAME": "gpt-worker-1", "RANK": "2", "WORLD_SIZE": "3",
			"MASTER_ADDR": "gpt-master-0", "MASTER_PORT": "23456"},
			identity{Name: "gpt-worker-1", Ordinal: 2, OrdinalFrom: "RANK", Coordinators: "gpt-master-0:23456", MinWorkers: 3, MaxWorkers: 3}},
		{"trainjob (torchrun env) wins over the plain names", map[string]string{"PET_NODE_RANK": "1", "RANK": "7", "PET_NNODES": "2:4",
			"WORLD_SIZE": "8", "PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29400", "MASTER_ADDR": "other"},
			identity{Name: "box", Ordinal: 1, OrdinalFrom: "PET_NODE_RANK", Coordinators: "job-node-0-0.job:29400", MinWorkers: 2, MaxWorkers: 4}},
		{"master without a port", map[string]string{"MASTER_ADDR": "coord"},
			identity{Name: "box", Ordinal: -1, Coordinators: "coord:7001"}},
		{"ipv6 master", map[string]string{"MASTER_ADDR": "fd00::1", "MASTER_PORT": "7001"},
			identity{Name: "box", Ordinal: -1, Coordinators: "[fd00::1]:7001"}},
		{"several processes in one pod", map[string]string{"POD_NAME": "w-0", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"},
			identity{Name: "w-0-1", Ordinal: 0, OrdinalFrom: "name"}},
		{"one process per pod keeps the name", map[string]string{"POD_NAME": "w-0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"},
			identity{Name: "w-0", Ordinal: 0, OrdinalFrom: "name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := identityFromEnv(envOf(tc.env), "box")
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestIdentityBadEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		name string // the variable the error must name
	}{
		{map[string]string{"POD_INDEX": "x"}, "POD_INDEX"},
		{map[string]string{"RANK": "-1"}, "RANK"},
		{map[string]string{"MASTER_ADDR": "m", "MASTER_PORT": "70000"}, "MASTER_PORT"},
		{map[string]string{"PET_MASTER_ADDR": "m", "PET_MASTER_PORT": "p"}, "PET_MASTER_PORT"},
		{map[string]string{"PET_NNODES": "4:2"}, "PET_NNODES"},
		{map[string]string{"WORLD_SIZE": "0"}, "WORLD_SIZE"},
		{map[string]string{"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "2"}, "LOCAL_RANK"},
		{map[string]string{"LOCAL_WORLD_SIZE": "two"}, "LOCAL_WORLD_SIZE"},
	} {
		_, err := identityFromEnv(envOf(tc.env), "box")
		if err == nil || !strings.Contains(err.Error(), tc.name+"=") {
			t.Errorf("env %v: error %v, want one naming %s", tc.env, err, tc.name)
		}
	}
}

// TestIdentityPrecedence runs the real commands: a flag beats RINGTRAIN_<FLAG>,
// which beats the pod's and the training operator's variables, which beat the
// built-in default.
func TestIdentityPrecedence(t *testing.T) {
	job := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(job, []byte("data: /nonexistent\nsteps: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flagsAfter := func(t *testing.T, args ...string) (id, coords, minW, maxW string) {
		t.Helper()
		root := newRoot()
		cmd, rest, err := root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		if err := root.PersistentPreRunE(cmd, nil); err != nil {
			t.Fatal(err)
		}
		get := func(name string) string {
			if f := cmd.Flags().Lookup(name); f != nil {
				return f.Value.String()
			}
			return ""
		}
		return get("id"), get("coordinators"), get("min-workers"), get("max-workers")
	}

	t.Setenv("POD_NAME", "ringtrain-worker-1")
	t.Setenv("MASTER_ADDR", "master")
	t.Setenv("MASTER_PORT", "7001")
	t.Setenv("WORLD_SIZE", "3")
	if id, coords, _, _ := flagsAfter(t, "worker"); id != "ringtrain-worker-1" || coords != "[master:7001]" {
		t.Errorf("from the pod: id %q coordinators %s", id, coords)
	}
	if id, _, _, _ := flagsAfter(t, "coordinator"); id != "ringtrain-worker-1" {
		t.Errorf("coordinator id %q, want POD_NAME", id)
	}
	if _, coords, minW, maxW := flagsAfter(t, "submit", job); coords != "[master:7001]" || minW != "3" || maxW != "3" {
		t.Errorf("submit: coordinators %s, min %s, max %s", coords, minW, maxW)
	}
	// `local --coordinators` counts embedded replicas: the environment leaves it alone.
	if _, coords, _, _ := flagsAfter(t, "local"); coords != "1" {
		t.Errorf("local --coordinators %q, want its default 1", coords)
	}
	t.Setenv("RINGTRAIN_ID", "env-id")
	t.Setenv("RINGTRAIN_COORDINATORS", "a:1,b:2")
	if id, coords, _, _ := flagsAfter(t, "worker"); id != "env-id" || coords != "[a:1,b:2]" {
		t.Errorf("RINGTRAIN_* should win: id %q coordinators %s", id, coords)
	}
	if id, coords, _, _ := flagsAfter(t, "worker", "--id", "flag-id", "--coordinators", "c:3"); id != "flag-id" || coords != "[c:3]" {
		t.Errorf("flags should win: id %q coordinators %s", id, coords)
	}
	t.Setenv("RANK", "nope")
	root := newRoot()
	cmd, _, err := root.Find([]string{"worker"})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.PersistentPreRunE(cmd, nil); err == nil || !strings.Contains(err.Error(), "RANK=") {
		t.Errorf("bad RANK: %v, want an error naming it", err)
	}
}
