//go:build !linux

package grpcdrain

import "net"

// bytesAcked is not known outside Linux: ok is false, and an open
// connection then makes no progress the drain can see.
func bytesAcked(*net.TCPConn) (n uint64, ok bool) { return 0, false }
