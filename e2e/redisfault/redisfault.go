// Package redisfault is a TCP proxy between a Redis client and a real Redis
// server that injects the faults that make a retried write count twice:
// it forwards a write command and then drops Redis's reply and resets the
// client's connection (the write happened; the client never hears so), it
// delays a reply past the client's read timeout, and it resets a
// connection before the command reaches Redis (the write did not happen).
//
// It reads the Redis protocol (RESP2 and RESP3) to know where a command
// ends and its reply begins, which a byte-level fault proxy (toxiproxy's
// toxics, say) cannot: they cut streams at byte counts or times, not after
// the Nth write's reply. Traffic is forwarded one command at a time, in
// order, as Redis itself answers a connection.
package redisfault

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the proxy does to one write command.
type Fault int

// The faults, in the order Proxy cycles through them.
const (
	// DropReply forwards the command, reads Redis's reply, discards it
	// and resets the client's connection.
	DropReply Fault = iota
	// DelayReply forwards the command and holds the reply for Delay
	// (longer than the client's read timeout) before sending it.
	DelayReply
	// ResetBefore resets the client's connection without forwarding the
	// command.
	ResetBefore
	numFaults
)

func (f Fault) String() string {
	return [...]string{"drop reply", "delay reply", "reset before"}[f]
}

// writes are the commands the proxy may fault: those that change the data.
var writes = map[string]bool{"INCR": true, "INCRBY": true, "EVAL": true, "EVALSHA": true, "SET": true}

// Proxy forwards connections from its address to Redis at Target.
type Proxy struct {
	// Target is Redis's address.
	Target string
	// Every: every Every-th write command gets a fault, the faults taken
	// in turn. 0 injects none.
	Every int
	// Delay is how long DelayReply holds a reply.
	Delay time.Duration

	ln     net.Listener
	writes atomic.Int64
	counts [numFaults]atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on 127.0.0.1 and forwards until Close.
func (p *Proxy) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.ln = ln
	p.conns = make(map[net.Conn]struct{})
	p.wg.Add(1)
	go p.accept()
	return nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Injected returns how many of each fault the proxy injected.
func (p *Proxy) Injected() map[Fault]int64 {
	m := make(map[Fault]int64, numFaults)
	for f := range numFaults {
		m[f] = p.counts[f].Load()
	}
	return m
}

// Close stops accepting, closes every connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// serve forwards one client connection, command by command.
func (p *Proxy) serve(client net.Conn) {
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.Target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	fromClient, fromServer := bufio.NewReader(client), bufio.NewReader(server)
	for {
		cmd, name, err := readCommand(fromClient)
		if err != nil {
			return
		}
		fault := Fault(-1)
		if writes[name] && p.Every > 0 {
			if n := p.writes.Add(1); n%int64(p.Every) == 0 {
				fault = Fault((n/int64(p.Every) - 1) % int64(numFaults))
			}
		}
		if fault == ResetBefore {
			p.counts[fault].Add(1)
			reset(client)
			return
		}
		if _, err := server.Write(cmd); err != nil {
			return
		}
		reply, err := readValue(fromServer)
		if err != nil {
			return
		}
		switch fault {
		case DropReply:
			p.counts[fault].Add(1)
			reset(client)
			return
		case DelayReply:
			p.counts[fault].Add(1)
			time.Sleep(p.Delay)
		}
		if _, err := client.Write(reply); err != nil {
			return
		}
	}
}

// reset closes c with an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// readCommand reads one client command (a RESP array of bulk strings, or
// an inline command) and returns its bytes and its upper-case name.
func readCommand(r *bufio.Reader) (raw []byte, name string, err error) {
	var buf []byte
	line, err := readLine(r, &buf)
	if err != nil {
		return nil, "", err
	}
	if line[0] != '*' {
		f := strings.Fields(line)
		if len(f) == 0 {
			return buf, "", nil
		}
		return buf, strings.ToUpper(f[0]), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return nil, "", fmt.Errorf("bad array header %q", line)
	}
	for i := range n {
		start := len(buf)
		if err := readInto(r, &buf); err != nil {
			return nil, "", err
		}
		if i == 0 {
			name = strings.ToUpper(bulkPayload(buf[start:]))
		}
	}
	return buf, name, nil
}

// bulkPayload returns the payload of one encoded bulk string.
func bulkPayload(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "\r\n"); i >= 0 && strings.HasSuffix(s, "\r\n") {
		return s[i+2 : len(s)-2]
	}
	return ""
}

// readValue reads one whole RESP2 or RESP3 value.
func readValue(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	err := readInto(r, &buf)
	return buf, err
}

func readInto(r *bufio.Reader, buf *[]byte) error {
	line, err := readLine(r, buf)
	if err != nil {
		return err
	}
	switch line[0] {
	case '+', '-', ':', '_', '#', ',', '(':
		return nil
	case '$', '=', '!': // bulk string, verbatim string, bulk error
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return fmt.Errorf("bad length %q", line)
		}
		if n < 0 {
			return nil // RESP2 null
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		*buf = append(*buf, b...)
		return nil
	case '*', '~', '>', '%', '|': // array, set, push, map, attribute
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return fmt.Errorf("bad count %q", line)
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range max(n, 0) {
			if err := readInto(r, buf); err != nil {
				return err
			}
		}
		if line[0] == '|' { // an attribute precedes the value it describes
			return readInto(r, buf)
		}
		return nil
	}
	return fmt.Errorf("unknown RESP type %q", line)
}

// readLine appends one CRLF-terminated line to buf and returns it without
// the CRLF.
func readLine(r *bufio.Reader, buf *[]byte) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	*buf = append(*buf, line...)
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty line")
	}
	return line, nil
}
