package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Spawner makes the commands of AllReduce's helper processes. Each helper is a
// process of its own (the program that runs the benchmark, started again) that
// calls AllReduceRank or TCPEnd with the options given, its standard input and
// output connected to the benchmark. The benchmark attaches stdin and stdout,
// starts the command and waits for it; the Spawner sets the rest (path, arguments,
// stderr, environment). Commands must be made with exec.CommandContext(ctx, ...),
// so that a benchmark that gives up kills its helpers.
//
// `ringtrain bench allreduce` re-executes its own binary with hidden subcommands;
// this package's tests re-execute the test binary.
type Spawner interface {
	// AllReduceRank returns the command of rank's process, which runs
	// AllReduceRank(ctx, o, rank, stdin, stdout, log).
	AllReduceRank(ctx context.Context, o AllReduceOptions, rank int) (*exec.Cmd, error)
	// TCPEnd returns the command of one end of the raw TCP measurement, which runs
	// TCPEnd(ctx, o, stdin, stdout).
	TCPEnd(ctx context.Context, o TCPEndOptions) (*exec.Cmd, error)
}

// helperMsg is what a helper process writes on stdout, one JSON object a line.
type helperMsg struct {
	Addr    string  `json:"addr,omitempty"`
	Bytes   int     `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"` // per all-reduce, averaged over the timed iterations
	// Seconds64 is the same for the int64 all-reduce of as many elements (Exact).
	Seconds64 float64 `json:"seconds64,omitempty"`
	Lanes     int     `json:"lanes,omitempty"`
	Error     string  `json:"error,omitempty"`
	Done      bool    `json:"done,omitempty"`
}

// ReportError tells the benchmark on a helper's stdout that the helper failed: for
// a helper process that fails before it calls AllReduceRank or TCPEnd, which report
// their own errors.
func ReportError(stdout io.Writer, err error) error {
	return json.NewEncoder(stdout).Encode(helperMsg{Error: err.Error()})
}

// helper is a started helper process.
type helper struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startHelper starts cmd with pipes to its stdin and stdout. The helper is killed
// when the context cmd was made with ends, and exits by itself when its stdin is
// closed.
func startHelper(cmd *exec.Cmd, err error) (*helper, error) {
	if err != nil {
		return nil, err
	}
	cmd.WaitDelay = 2 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strings.Join(cmd.Args[1:], " "), err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &helper{cmd: cmd, in: in, out: sc}, nil
}

// next reads the helper's next message.
func (h *helper) next(v *helperMsg) error {
	if !h.out.Scan() {
		if err := h.out.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(h.out.Bytes(), v)
}

// stop closes the helper's stdin and waits for it to exit.
func (h *helper) stop() error {
	h.in.Close()
	return h.cmd.Wait()
}
