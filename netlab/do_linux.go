package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread in the host's namespace and returns its error: sockets
// f opens (a listener, a dialled connection) belong to the namespace and stay in
// it after Do returns, so a process can serve or dial as a host without a process
// of its own. f must not start goroutines that expect the namespace (they run on
// other threads). The thread is returned to the caller's namespace afterwards, or
// discarded when it cannot be.
func (h *Host) Do(f func() error) error {
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer own.Close()
	target, err := os.Open(filepath.Join("/run/netns", h.NS))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: host %q: %w", h.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: entering host %q: %w", h.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netlab: leaving host %q: %w", h.Name, err) // the thread stays locked and exits with the goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}
