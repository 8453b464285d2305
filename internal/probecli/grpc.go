package probecli

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/internal/hpack"
	"github.com/drainwell/drainwell/internal/marker"
)

// grpcCheck is grpc-health-probe's job: one grpc.health.v1.Health/Check
// call, exit 0 when the answer is SERVING. It speaks just enough HTTP/2
// for one unary call (frames and the two protobuf messages by hand, header
// blocks with internal/hpack) instead of linking grpc-go, x/net or
// protobuf's runtime: the probe's start-up is paid on every exec probe of
// every pod, and protobuf's init alone (internal/detrand hashes the
// executable) cost more than the whole start-up budget.
//
// Flags are ours (--service, --timeout, --tls...) or grpc-health-probe's
// (-addr, -service, -connect-timeout, -rpc-timeout, -tls...), so that a
// manifest switches by changing the command's first words.
func grpcCheck(ctx context.Context, client TLSClient, args []string, stderr io.Writer) error {
	fs := flagSet("grpc", stderr)
	var (
		addr           = fs.String("addr", "", "HOST:PORT (grpc-health-probe's spelling; or the argument)")
		service        = fs.String("service", "", "the service name to check; empty: the server as a whole")
		timeout        = fs.Duration("timeout", time.Second, "give up after this long (connection and call)")
		connectTimeout = fs.Duration("connect-timeout", 0, "grpc-health-probe's: bound on the connection (default --timeout)")
		rpcTimeout     = fs.Duration("rpc-timeout", 0, "grpc-health-probe's: bound on the call (default --timeout)")
		userAgent      = fs.String("user-agent", "drainwell-probe", "user-agent of the call")
		headers        rpcHeaders
	)
	fs.Var(&headers, "rpc-header", "extra metadata KEY: VALUE (repeatable)")
	fs.Bool("v", false, "grpc-health-probe's verbose flag: accepted, ignored")
	unsupported := map[string]*bool{}
	for _, name := range []string{"alts", "spiffe", "gzip"} {
		unsupported[name] = fs.Bool(name, false, "grpc-health-probe's: not supported")
	}
	tc := tlsFlags(fs)
	args, err := flagsFirst(fs, args)
	if err != nil {
		return err
	}
	if err := parse(fs, args, -1, ""); err != nil {
		return err
	}
	for name, set := range unsupported {
		if *set {
			return fmt.Errorf("%w: -%s is not supported (grpc-health-probe's flag)", marker.ErrUsage, name)
		}
	}
	switch {
	case fs.NArg() == 1 && *addr == "":
		*addr = fs.Arg(0)
	case fs.NArg() != 0 || *addr == "":
		return fmt.Errorf("%w: want one HOST:PORT (or -addr), got %d arguments", marker.ErrUsage, fs.NArg())
	}
	if err := hostPort(*addr); err != nil {
		return err
	}
	for name, d := range map[string]*time.Duration{"--timeout": timeout, "--connect-timeout": connectTimeout, "--rpc-timeout": rpcTimeout} {
		if name != "--timeout" && *d == 0 {
			continue // defaults to --timeout
		}
		if err := positive(name, *d); err != nil {
			return err
		}
	}
	if *connectTimeout == 0 {
		*connectTimeout = *timeout
	}
	if *rpcTimeout == 0 {
		*rpcTimeout = *timeout
	}
	hs, err := tc.handshake(client, *addr, "h2")
	if err != nil {
		return err
	}

	dialCtx, cancel := context.WithTimeout(ctx, *connectTimeout)
	defer cancel()
	conn, err := dial(dialCtx, *addr, hs)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(*rpcTimeout)
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	c := &h2conn{conn: conn, r: bufio.NewReader(conn)}
	scheme := "http"
	if tc.Enabled {
		scheme = "https"
	}
	status, err := c.check(*addr, scheme, *service, *userAgent, headers, *rpcTimeout)
	err = c.explain(err, *rpcTimeout)
	c.close(deadline)
	if err != nil {
		return err
	}
	if status != servingStatusServing {
		return errors.New(servingStatusName(status))
	}
	return nil
}

// rpcHeaders collects -rpc-header KEY: VALUE flags.
type rpcHeaders [][2]string

func (h *rpcHeaders) String() string { return fmt.Sprint(*h) }

func (h *rpcHeaders) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	k = strings.ToLower(strings.TrimSpace(k))
	if !ok || k == "" || strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") {
		return fmt.Errorf("%q: want KEY: VALUE (not a reserved key)", v)
	}
	*h = append(*h, [2]string{k, strings.TrimSpace(val)})
	return nil
}

// The HealthCheckResponse.ServingStatus values.
const (
	servingStatusUnknown        = 0
	servingStatusServing        = 1
	servingStatusNotServing     = 2
	servingStatusServiceUnknown = 3
)

func servingStatusName(s uint64) string {
	switch s {
	case servingStatusUnknown:
		return "UNKNOWN"
	case servingStatusServing:
		return "SERVING"
	case servingStatusNotServing:
		return "NOT_SERVING"
	case servingStatusServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return "status " + strconv.FormatUint(s, 10)
}

// HTTP/2 frame types and flags (RFC 9113, section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	maxFrameSize = 16384   // the default SETTINGS_MAX_FRAME_SIZE, which we never raise
	maxHeaders   = 1 << 16 // a header block larger than this is not a health check's
	maxMessage   = 1 << 12 // a HealthCheckResponse is a few bytes
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h2conn is one HTTP/2 connection that carries one unary call on stream 1.
type h2conn struct {
	conn net.Conn
	r    *bufio.Reader
	hdr  [9]byte
}

func (c *h2conn) writeFrame(typ, flags byte, stream uint32, payload []byte) error {
	_, err := c.conn.Write(frame(typ, flags, stream, payload))
	return err
}

// frame encodes one HTTP/2 frame (RFC 9113, 4.1).
func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	h := make([]byte, 9, 9+len(payload))
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload)) // #nosec G115 -- a frame is under 16 KiB: the bytes of a 24-bit length
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream)
	return append(h, payload...)
}

// readFrame reads one frame; a frame larger than we allow is a protocol
// error (we advertise no larger SETTINGS_MAX_FRAME_SIZE).
func (c *h2conn) readFrame() (typ, flags byte, stream uint32, payload []byte, err error) {
	if _, err = io.ReadFull(c.r, c.hdr[:]); err != nil {
		return 0, 0, 0, nil, err
	}
	n := int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
	if string(c.hdr[:5]) == "HTTP/" {
		return 0, 0, 0, nil, errors.New("not HTTP/2: the server answered in HTTP/1")
	}
	if n > maxFrameSize {
		return 0, 0, 0, nil, fmt.Errorf("not HTTP/2: a frame of %d bytes (type %d)", n, c.hdr[3])
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.r, payload); err != nil {
		return 0, 0, 0, nil, err
	}
	return c.hdr[3], c.hdr[4], binary.BigEndian.Uint32(c.hdr[5:]) & 0x7fffffff, payload, nil
}

// check sends the call and reads its answer: the serving status, or an
// error that says what went wrong in one line.
func (c *h2conn) check(authority, scheme, service, userAgent string, extra rpcHeaders, timeout time.Duration) (uint64, error) {
	var block []byte
	fields := [][2]string{
		{":method", "POST"}, {":scheme", scheme}, {":path", "/grpc.health.v1.Health/Check"}, {":authority", authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", userAgent},
		{"grpc-timeout", grpcTimeout(timeout)},
	}
	for _, f := range append(fields, extra...) {
		block = hpack.AppendLiteral(block, hpack.Field{Name: f[0], Value: f[1]})
	}
	// HealthCheckRequest{service: field 1, a string}.
	req := append([]byte{0x0a}, appendVarint(nil, uint64(len(service)))...)
	req = append(req, service...)
	msg := make([]byte, 5, 5+len(req))
	binary.BigEndian.PutUint32(msg[1:], uint32(len(req))) // #nosec G115 -- a service name, far below 4 GiB
	msg = append(msg, req...)

	// Preface, our SETTINGS (no push), the call's HEADERS and its DATA,
	// in one write: one packet, one system call.
	if len(block) > maxFrameSize {
		return 0, fmt.Errorf("%w: request headers too large", marker.ErrUsage)
	}
	out := append([]byte(clientPreface), frame(frameSettings, 0, 0, []byte{0, 2, 0, 0, 0, 0})...) // SETTINGS_ENABLE_PUSH = 0
	out = append(out, frame(frameHeaders, flagEndHeaders, 1, block)...)
	out = append(out, frame(frameData, flagEndStream, 1, msg)...)
	if _, err := c.conn.Write(out); err != nil {
		return 0, err
	}
	return c.readResponse()
}

// readResponse reads frames until stream 1 ends.
func (c *h2conn) readResponse() (uint64, error) {
	var (
		dec        = hpack.NewDecoder(4096, maxHeaders)
		headers    []hpack.Field // the response's headers, then its trailers
		block      []byte        // a header block being read
		blockEnds  bool          // the block's HEADERS frame had END_STREAM
		inBlock    bool
		gotHeaders bool
		body       []byte
		// What the blocks decode to, over all of them: a small block can
		// name a large dynamic-table entry many times over.
		decoded int
	)
	for {
		typ, flags, stream, p, err := c.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, errors.New("connection closed by the server before the answer")
			}
			if strings.HasPrefix(err.Error(), "not HTTP/2") {
				return 0, err
			}
			return 0, err
		}
		if inBlock && typ != frameContinuation {
			return 0, errors.New("not HTTP/2: a header block interrupted")
		}
		switch typ {
		case frameSettings:
			if flags&flagAck == 0 {
				if len(p)%6 != 0 {
					return 0, errors.New("not HTTP/2: a malformed SETTINGS frame")
				}
				if err := c.writeFrame(frameSettings, flagAck, 0, nil); err != nil {
					return 0, err
				}
			}
		case framePing:
			if flags&flagAck == 0 && len(p) == 8 {
				if err := c.writeFrame(framePing, flagAck, 0, p); err != nil {
					return 0, err
				}
			}
		case frameGoAway:
			if len(p) >= 8 && binary.BigEndian.Uint32(p)&0x7fffffff < 1 {
				return 0, fmt.Errorf("the server refused the call (GOAWAY, error code %d)", binary.BigEndian.Uint32(p[4:]))
			}
		case frameRSTStream:
			if stream == 1 {
				code := uint32(0)
				if len(p) == 4 {
					code = binary.BigEndian.Uint32(p)
				}
				return 0, fmt.Errorf("the server reset the call (RST_STREAM, error code %d)", code)
			}
		case frameHeaders, frameContinuation:
			if stream != 1 {
				return 0, errors.New("not HTTP/2: headers on a stream we did not open")
			}
			if typ == frameHeaders {
				if p, err = unpadHeaders(flags, p); err != nil {
					return 0, err
				}
				blockEnds = flags&flagEndStream != 0
			}
			if len(block)+len(p) > maxHeaders {
				return 0, errors.New("response headers too large")
			}
			block = append(block, p...)
			inBlock = flags&flagEndHeaders == 0
			if inBlock {
				continue
			}
			fields, err := dec.Decode(block)
			if err != nil {
				return 0, fmt.Errorf("not HTTP/2: %v", err)
			}
			block = block[:0]
			for _, f := range fields {
				decoded += len(f.Name) + len(f.Value) + 32 // RFC 7541's size of a field
			}
			if decoded > maxHeaders {
				return 0, fmt.Errorf("response headers too large: more than %d bytes decoded", maxHeaders)
			}
			if gotHeaders && !blockEnds {
				return 0, errors.New("not gRPC: a header block after the headers that does not end the call")
			}
			if !gotHeaders {
				gotHeaders = true
				if err := checkResponseHeaders(fields); err != nil {
					return 0, err
				}
			}
			headers = append(headers, fields...)
			if blockEnds {
				return answer(headers, body)
			}
		case frameData:
			if stream != 1 || !gotHeaders {
				return 0, errors.New("not HTTP/2: data before the response headers")
			}
			if flags&flagPadded != 0 {
				if len(p) == 0 || int(p[0]) >= len(p) {
					return 0, errors.New("not HTTP/2: bad padding")
				}
				p = p[1 : len(p)-int(p[0])]
			}
			if len(body)+len(p) > 5+maxMessage {
				return 0, fmt.Errorf("oversized answer: more than %d bytes", maxMessage)
			}
			body = append(body, p...)
			if len(body) >= 5 {
				if n := binary.BigEndian.Uint32(body[1:5]); n > maxMessage {
					return 0, fmt.Errorf("oversized answer: a message of %d bytes", n)
				}
			}
			if flags&flagEndStream != 0 {
				return answer(headers, body)
			}
		case framePushPromise:
			return 0, errors.New("not HTTP/2: a push we disabled")
		}
	}
}

// unpadHeaders strips a HEADERS frame's padding and priority fields.
func unpadHeaders(flags byte, p []byte) ([]byte, error) {
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) == 0 {
			return nil, errors.New("not HTTP/2: bad padding")
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("not HTTP/2: bad priority")
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, errors.New("not HTTP/2: bad padding")
	}
	return p[:len(p)-pad], nil
}

func checkResponseHeaders(fields []hpack.Field) error {
	status, ctype := "", ""
	for _, f := range fields {
		switch f.Name {
		case ":status":
			status = f.Value
		case "content-type":
			ctype = f.Value
		}
	}
	if status != "200" {
		return fmt.Errorf("not a gRPC server: HTTP status %q", status)
	}
	if ctype != "application/grpc" && !strings.HasPrefix(ctype, "application/grpc+") && !strings.HasPrefix(ctype, "application/grpc;") {
		return fmt.Errorf("not a gRPC server: content-type %q", ctype)
	}
	return nil
}

// answer reads the call's status from the trailers and, when it is OK, the
// serving status from the message.
func answer(fields []hpack.Field, body []byte) (uint64, error) {
	code, message := "", ""
	for _, f := range fields {
		switch f.Name {
		case "grpc-status":
			code = f.Value
		case "grpc-message":
			message = percentDecode(f.Value)
		}
	}
	switch code {
	case "0":
	case "":
		return 0, errors.New("not a gRPC answer: no grpc-status")
	case "5": // NOT_FOUND: grpc-go's and grpc-java's answer for a service they do not know
		return 0, fmt.Errorf("SERVICE_UNKNOWN (NotFound: %s)", printable(message))
	case "12":
		return 0, errors.New("the server does not implement grpc.health.v1.Health (Unimplemented)")
	default:
		return 0, fmt.Errorf("the call failed: %s: %s", codeName(code), printable(message))
	}
	if len(body) < 5 {
		return 0, errors.New("not a gRPC answer: no message")
	}
	if body[0] != 0 {
		return 0, errors.New("a compressed answer, which we did not ask for")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if int(n) != len(body)-5 {
		return 0, errors.New("not a gRPC answer: the message's length does not match")
	}
	return servingStatus(body[5:])
}

// servingStatus decodes HealthCheckResponse (field 1, an enum), skipping
// fields it does not know.
func servingStatus(b []byte) (uint64, error) {
	malformed := errors.New("a malformed answer")
	var status uint64
	for len(b) > 0 {
		tag, n := consumeVarint(b)
		if n == 0 {
			return 0, malformed
		}
		b = b[n:]
		var v uint64
		switch tag & 7 {
		case 0: // varint
			if v, n = consumeVarint(b); n == 0 {
				return 0, malformed
			}
			if tag>>3 == 1 {
				status = v
			}
		case 1: // 64-bit
			n = 8
		case 2: // length-delimited
			if v, n = consumeVarint(b); n == 0 || v > uint64(len(b)-n) { // #nosec G115 -- len(b)-n >= 0
				return 0, malformed
			}
			n += int(v) // #nosec G115 -- v <= len(b)-n, an int
		case 5: // 32-bit
			n = 4
		default:
			return 0, malformed
		}
		if n > len(b) {
			return 0, malformed
		}
		b = b[n:]
	}
	return status, nil
}

// consumeVarint decodes a protobuf varint; n is 0 when b holds none.
func consumeVarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func appendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// close ends the connection the way a server likes: GOAWAY, then our side
// closed for writing, then its remaining frames read until it closes too.
// Closing with unread data in the socket would send a reset, which servers
// log as an error (grpc-health-probe #34).
func (c *h2conn) close(deadline time.Time) {
	_ = c.writeFrame(frameGoAway, 0, 0, make([]byte, 8)) // last stream 0, NO_ERROR; best effort
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // best effort: the close below ends it either way
	}
	// A little past the call's deadline at most: the server closes its side
	// at once once it reads our end.
	_ = c.conn.SetReadDeadline(earliest(deadline, time.Now().Add(200*time.Millisecond)))
	_, _ = io.Copy(io.Discard, c.r) // until the server's EOF or the deadline
}

// explain turns a transport error into its reason: a TLS alert the server
// sent (a write fails before the read that would show it: read it), a
// reset, the deadline.
func (c *h2conn) explain(err error, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		// What the server said before it closed.
		_ = c.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		b, rerr := c.r.Peek(5)
		switch {
		case string(b) == "HTTP/":
			return errors.New("not HTTP/2: the server answered in HTTP/1")
		case rerr != nil && strings.Contains(rerr.Error(), "tls:"):
			err = rerr
		}
	}
	switch {
	case strings.Contains(err.Error(), "tls:"):
		return fmt.Errorf("TLS: %w", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("deadline: no answer within %s", timeout)
	case errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("connection closed by the server (reset) before the answer: %w", err)
	}
	return err
}

// grpcTimeout is the grpc-timeout header's value for d, in milliseconds.
func grpcTimeout(d time.Duration) string {
	ms := max(d.Milliseconds(), 1)
	if ms > 99999999 {
		return "99999999m"
	}
	return strconv.FormatInt(ms, 10) + "m"
}

var codeNames = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func codeName(code string) string {
	if n, err := strconv.Atoi(code); err == nil && n >= 0 && n < len(codeNames) {
		return codeNames[n]
	}
	return "code " + code
}

// percentDecode undoes grpc-message's percent-encoding.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// printable is a server's text made safe for one line of stderr: control
// characters (escape sequences, newlines) become spaces, invalid UTF-8
// becomes U+FFFD, and it is cut at maxMessageText runes.
func printable(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxMessageText {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// maxMessageText bounds what the probe prints of a grpc-message.
const maxMessageText = 200

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
