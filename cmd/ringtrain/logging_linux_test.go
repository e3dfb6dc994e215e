package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair, skipping the test where there is none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		t.Skipf("unlock pseudo-terminal: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		t.Skipf("pseudo-terminal number: %v", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func TestSameTerminal(t *testing.T) {
	_, a := openPTY(t)
	_, b := openPTY(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a2, err := os.OpenFile(a.Name(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	for _, c := range []struct {
		x, y *os.File
		want bool
	}{{a, a, true}, {a, a2, true}, {a, b, false}, {a, f, false}, {f, f, false}} {
		if got := sameTerminal(c.x, c.y); got != c.want {
			t.Errorf("sameTerminal(%s, %s) = %v, want %v", c.x.Name(), c.y.Name(), got, c.want)
		}
	}
}

// TestEvaluationPrintedOnceOnTerminal trains with standard output and standard
// error on one terminal: each evaluation shows as the progress output's validation
// line, and is not logged a second time; the other records are logged as usual.
func TestEvaluationPrintedOnceOnTerminal(t *testing.T) {
	data := prepareData(t)
	master, slave := openPTY(t)
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&screen, master) // ends when the terminal closes
		close(done)
	}()

	savedOut, savedErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = slave, slave
	root := newRoot()
	root.SetArgs(tinyTrain(data, filepath.Join(t.TempDir(), "run"), "--steps", "10", "--eval-interval", "5", "--checkpoint-interval", "5"))
	err := root.ExecuteContext(context.Background())
	os.Stdout, os.Stderr = savedOut, savedErr
	slave.Close()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	out := screen.String()
	if n := len(regexp.MustCompile(`step +\d+/10  val loss \d`).FindAllString(out, -1)); n != 2 {
		t.Errorf("%d validation lines, want 2:\n%s", n, out)
	}
	if strings.Contains(out, "msg=eval") {
		t.Errorf("an evaluation was also logged on the terminal:\n%s", out)
	}
	if !strings.Contains(out, "msg=\"checkpoint written\"") {
		t.Errorf("the other records are missing:\n%s", out)
	}
}
