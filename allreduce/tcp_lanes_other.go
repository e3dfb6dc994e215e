//go:build !linux

package allreduce

import "net"

// setRecvLowWater is a no-op where SO_RCVLOWAT is not used.
func setRecvLowWater(net.Conn, int) {}
