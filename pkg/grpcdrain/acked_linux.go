package grpcdrain

import (
	"net"

	"golang.org/x/sys/unix"
)

// bytesAcked returns how many bytes c's peer has acknowledged (TCP_INFO's
// tcpi_bytes_acked); ok is false once c is closed.
func bytesAcked(c *net.TCPConn) (n uint64, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || serr != nil {
		return 0, false
	}
	return info.Bytes_acked, true
}
