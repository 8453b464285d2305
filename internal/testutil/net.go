package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Listen returns a TCP listener on 127.0.0.1:0, closed at the test's end.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Serve accepts connections on a new 127.0.0.1 listener and gives each to
// handle on a goroutine of its own, closing it when handle returns; it
// returns the listener's address. The listener closes at the test's end:
// a raw test server (a mute one, a broken one, a hostile one).
func Serve(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln := Listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// RefusedAddr returns a 127.0.0.1 address that refuses connections for the
// whole test: its port is bound by a socket that never listens, so that
// nobody else can take it (a port merely found free may be taken by the
// time it is dialled).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// Refused reports whether a TCP connection to addr is refused (or fails
// otherwise).
func Refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, Patience)
	if err == nil {
		c.Close()
	}
	return err != nil
}

// RawConn is a keep-alive HTTP/1.1 client connection the test drives
// request by request, to see exactly when the server ends it.
type RawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// Dial connects to addr (host:port); the connection is closed at the
// test's end.
func Dial(t testing.TB, addr string) *RawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, Patience)
	if err != nil {
		t.Fatal(err)
	}
	return NewRawConn(t, c)
}

// NewRawConn drives c (connected to an HTTP server) as a RawConn; it is
// closed at the test's end.
func NewRawConn(t testing.TB, c net.Conn) *RawConn {
	t.Cleanup(func() { c.Close() })
	return &RawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// Get sends GET path on the connection and reads the whole response.
func (rc *RawConn) Get(path string) *http.Response {
	rc.t.Helper()
	rc.c.SetDeadline(time.Now().Add(Patience))
	if _, err := io.WriteString(rc.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		rc.t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rc.c.SetDeadline(time.Time{})
	return resp
}

// Conn is the underlying connection.
func (rc *RawConn) Conn() net.Conn { return rc.c }

// Reader reads what the server sent on the connection (buffered: read
// responses through it, not through Conn).
func (rc *RawConn) Reader() *bufio.Reader { return rc.r }

// WaitClosed waits up to d for the server to end the connection (EOF or
// reset); it returns an error if it is still open then, or if the server
// sent data instead. With d = 0 it looks without waiting (in a
// testing/synctest bubble, after synctest.Wait: "not closed yet").
func (rc *RawConn) WaitClosed(d time.Duration) error {
	rc.c.SetReadDeadline(time.Now().Add(d))
	defer rc.c.SetReadDeadline(time.Time{})
	_, err := rc.r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %s", d)
	}
	if err == nil {
		return errors.New("the server sent data where it should have closed the connection")
	}
	return nil
}
