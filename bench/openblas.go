package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// OpenBLAS talks to scripts/bench/openblas_gemm.py --serve: it sends one shape and a
// duration per line and reads back GFLOP/s, so that OpenBLAS is timed interleaved
// with the Go implementations, under the same machine load. One goroutine at a time.
type OpenBLAS struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	banner string
}

// StartOpenBLAS starts script with python on threads threads and reads its banner;
// the process ends when ctx does, or at Close. Its stderr is this process's.
func StartOpenBLAS(ctx context.Context, python, script string, threads int) (*OpenBLAS, error) {
	cmd := exec.CommandContext(ctx, python, script, "--serve", "--threads", strconv.Itoa(threads))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", python, script, err)
	}
	s := &OpenBLAS{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if s.banner, err = s.out.ReadString('\n'); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s did not start: %w", script, err)
	}
	s.banner = strings.TrimSpace(s.banner)
	return s, nil
}

// Banner is the script's first line: the library, its version and threads.
func (s *OpenBLAS) Banner() string { return s.banner }

// Measure times sh for about d in the script and returns its GFLOP/s.
func (s *OpenBLAS) Measure(sh GemmShape, d time.Duration) (float64, error) {
	if _, err := fmt.Fprintf(s.in, "%s %d %d %d %g\n", sh.Op, sh.M, sh.N, sh.K, d.Seconds()); err != nil {
		return 0, fmt.Errorf("openblas: %w", err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("openblas: %w", err)
	}
	return strconv.ParseFloat(strings.TrimSpace(line), 64)
}

// Close closes the script's stdin and waits for it to exit.
func (s *OpenBLAS) Close() {
	s.in.Close()
	_ = s.cmd.Wait()
}
