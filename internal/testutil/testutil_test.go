package testutil

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	if !Refused(addr) {
		t.Fatalf("%s accepted a connection", addr)
	}
	// Nobody else can take the port while the test holds it.
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("%s could be bound by another listener", addr)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	if !eventually(time.Minute, func() bool { n++; return n == 3 }) {
		t.Fatal("eventually gave up on a condition that held")
	}
	if eventually(10*time.Millisecond, func() bool { return false }) {
		t.Fatal("eventually reported a condition that never held")
	}
}

func TestBufferCount(t *testing.T) {
	var b Buffer
	b.Write([]byte("a warn\nb info\nc warn"))
	if n := b.Count("warn"); n != 2 {
		t.Fatalf("Count = %d, want 2 in %q", n, b.String())
	}
	if !strings.HasPrefix(b.String(), "a warn") {
		t.Fatalf("String = %q", b.String())
	}
}
