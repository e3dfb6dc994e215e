package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"testing"
)

// helperEnv, when set, makes the test binary one of AllReduce's helper processes:
// its value is a helperSpec in JSON.
const helperEnv = "RINGTRAIN_BENCH_HELPER"

// helperSpec is what testSpawner hands a helper process.
type helperSpec struct {
	Rank      *int             `json:"rank,omitempty"` // AllReduceRank with AllReduce; else TCPEnd with TCP
	AllReduce AllReduceOptions `json:"all_reduce"`
	TCP       TCPEndOptions    `json:"tcp"`
}

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(runHelper(v))
	}
	os.Exit(m.Run())
}

func runHelper(v string) int {
	var h helperSpec
	if err := json.Unmarshal([]byte(v), &h); err != nil {
		ReportError(os.Stdout, fmt.Errorf("%s: %w", helperEnv, err))
		return 2
	}
	var err error
	if h.Rank != nil {
		err = AllReduceRank(context.Background(), h.AllReduce, *h.Rank, os.Stdin, os.Stdout, slog.New(slog.DiscardHandler))
	} else {
		err = TCPEnd(context.Background(), h.TCP, os.Stdin, os.Stdout)
	}
	if err != nil {
		return 1
	}
	return 0
}

// testSpawner starts helpers by re-executing the test binary, running no tests.
type testSpawner struct{}

func (testSpawner) AllReduceRank(ctx context.Context, o AllReduceOptions, rank int) (*exec.Cmd, error) {
	return helperCommand(ctx, helperSpec{Rank: &rank, AllReduce: o})
}

func (testSpawner) TCPEnd(ctx context.Context, o TCPEndOptions) (*exec.Cmd, error) {
	return helperCommand(ctx, helperSpec{TCP: o})
}

func helperCommand(ctx context.Context, h helperSpec) (*exec.Cmd, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	return cmd, nil
}
