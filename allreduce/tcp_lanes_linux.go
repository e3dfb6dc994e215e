package allreduce

import (
	"net"
	"syscall"
)

// setRecvLowWater asks the kernel to wake a reader of c only once n bytes are
// queued (SO_RCVLOWAT), so a large payload arrives in few reads and wakeups.
func setRecvLowWater(c net.Conn, n int) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, max(n, 1))
	})
}
