// Package probecli is the standalone probe binary: live, http, grpc, tcp,
// sleep and run. Besides the standard library it links only internal/marker
// and internal/hpack, and no TLS (the caller passes a TLSClient: probe-tls
// does), because its start-up is paid on every exec probe of every pod.
package probecli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/internal/marker"
)

const usage = `usage: probe COMMAND [flags] [args]     (probe-tls: the same, with TLS)

commands:
  live                   exit 0 if the liveness marker is fresh (LIVE_FILE, LIVE_MAX_AGE)
  http URL               exit 0 if GET URL answers 200-399 within --timeout
                         (https, in probe-tls: verified; --tls-no-verify as the
                         kubelet's HTTPS probe)
  grpc HOST:PORT         exit 0 if grpc.health.v1.Health/Check answers SERVING
                         (--service, --timeout, --tls...; grpc-health-probe's -addr,
                         -connect-timeout, -rpc-timeout, -tls... flags work too)
  tcp HOST:PORT          exit 0 if a TCP connection opens within --timeout
  sleep DURATION         sleep, then exit 0 (a preStop hook)
  run [flags] -- CMD ... run CMD as a child, keep the marker while it lives,
                         forward signals, reap zombies; exit with its code
                         (128+N if signal N killed it; 127 not found, 126 not
                         executable)
  version                print the version

Every --timeout is positive and at most 1h; a HOST:PORT's port is 1-65535.

TLS flags (grpc, http), in probe-tls only: --tls, --tls-ca-cert FILE,
  --tls-client-cert FILE, --tls-client-key FILE, --tls-no-verify,
  --tls-server-name NAME (probe has no TLS: smaller, and quicker to start)

exit status: 0 success, 1 check failed, 2 usage or configuration error
  (grpc-health-probe's: 1 bad arguments, 2 connection failed, 3 call failed,
  4 not serving; ours: 2 = its 1, and 1 = its 2, 3 and 4)
`

// Env is how the probe reads its environment: os.LookupEnv in production.
type Env func(string) (string, bool)

// Main runs the probe with args (without the program name) and returns its
// exit status. tls is the TLS stack of --tls and https://; nil: none (a
// check that asks for TLS is a usage error that names probe-tls).
func Main(ctx context.Context, tls TLSClient, args []string, env Env, stdout, stderr io.Writer) int {
	name := "probe"
	if tls != nil {
		name = "probe-tls"
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, name, version())
		return 0
	case "live":
		err = live(ctx, args[1:], env, stderr)
	case "http":
		err = httpCheck(ctx, tls, args[1:], stderr)
	case "tcp":
		err = tcpCheck(ctx, args[1:], stderr)
	case "grpc":
		err = grpcCheck(ctx, tls, args[1:], stderr)
	case "sleep":
		err = sleepCmd(ctx, args[1:], stderr)
	case "run":
		return run(ctx, name, args[1:], env, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q (try: live, http, grpc, tcp, sleep, run)", marker.ErrUsage, args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", name, args[0], err)
	}
	return marker.ExitCode(err)
}

// flagSet makes a flag set that reports a bad flag as one error line (the
// caller prints it) rather than the flag package's usage dump.
func flagSet(name string, _ io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses flags and wants exactly nargs arguments after them (any
// number when nargs is -1). With nargs >= 0, flags may also follow the
// arguments (`probe grpc HOST:PORT --service x`), as cobra allows; with -1
// (run's command line) everything after the first argument is left alone.
func parse(fs *flag.FlagSet, args []string, nargs int, what string) error {
	if nargs >= 0 {
		var err error
		if args, err = flagsFirst(fs, args); err != nil {
			return err
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", marker.ErrUsage, err)
	}
	if nargs >= 0 && fs.NArg() != nargs {
		return fmt.Errorf("%w: want %s, got %d arguments", marker.ErrUsage, what, fs.NArg())
	}
	return nil
}

// flagsFirst moves the flags (with their values) before the other
// arguments, which follow a "--" so that none is taken for a flag. A
// last flag that wants a value and has none is a usage error (the "--"
// would have become its value).
func flagsFirst(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil || hasValue {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 == len(args) {
			return nil, fmt.Errorf("%w: flag needs an argument: %s", marker.ErrUsage, a)
		}
		i++
		flags = append(flags, args[i])
	}
	return append(append(flags, "--"), rest...), nil
}

func positive(name string, d time.Duration) error {
	switch {
	case d <= 0:
		return fmt.Errorf("%w: %s=%s must be positive", marker.ErrUsage, name, d)
	case d > maxTimeout:
		return fmt.Errorf("%w: %s=%s exceeds %s (a probe that outlives any kubelet timeout)", marker.ErrUsage, name, d, maxTimeout)
	}
	return nil
}

// maxTimeout bounds every timeout flag.
const maxTimeout = time.Hour

// hostPort checks a HOST:PORT argument: a port from 1 to 65535, or a
// service name. A bad one is a usage error (exit 2), not a failed check.
func hostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %v", marker.ErrUsage, err)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return fmt.Errorf("%w: address %s: port %d out of range 1-65535", marker.ErrUsage, addr, n)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%w: address %s: unknown port %q", marker.ErrUsage, addr, port)
	}
	return nil
}

// liveFlags reads LIVE_FILE and LIVE_MAX_AGE, then the flags that override
// them, as pkg/probe's live command does.
func liveFlags(fs *flag.FlagSet, args []string, nargs int, what string, env Env) (path string, maxAge time.Duration, err error) {
	path, maxAge, envErr := marker.Env(env)
	fs.StringVar(&path, "file", path, "marker file (env LIVE_FILE)")
	fs.DurationVar(&maxAge, "max-age", maxAge, "age beyond which the marker is stale; 0: existence only (env LIVE_MAX_AGE)")
	if err := parse(fs, args, nargs, what); err != nil {
		return "", 0, err
	}
	maxAgeSet := false
	fs.Visit(func(f *flag.Flag) { maxAgeSet = maxAgeSet || f.Name == "max-age" })
	if envErr != nil && !maxAgeSet {
		return "", 0, envErr
	}
	return path, maxAge, marker.Validate(path, maxAge)
}

func live(ctx context.Context, args []string, env Env, stderr io.Writer) error {
	fs := flagSet("live", stderr)
	timeout := fs.Duration("timeout", marker.DefaultTimeout, "give up after this long")
	path, maxAge, err := liveFlags(fs, args, 0, "no arguments", env)
	if err != nil {
		return err
	}
	if err := positive("--timeout", *timeout); err != nil {
		return err
	}
	return marker.Live(ctx, path, maxAge, *timeout)
}

// httpCheck is kubelet's httpGet: GET the URL and succeed on a status of
// 200-399. It reads the status line only (then at most 64 KiB more, so that
// it can close without a reset), and does not follow redirects (a 3xx is a
// success, as for kubelet). It speaks HTTP/1.1 by hand, over TLS for
// https: net/http would double the probe's start-up cost.
func httpCheck(ctx context.Context, client TLSClient, args []string, stderr io.Writer) error {
	fs := flagSet("http", stderr)
	timeout := fs.Duration("timeout", time.Second, "give up after this long")
	tc := tlsFlags(fs)
	if err := parse(fs, args, 1, "one URL"); err != nil {
		return err
	}
	if err := positive("--timeout", *timeout); err != nil {
		return err
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: %v", marker.ErrUsage, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: URL %q: want http[s]://HOST[:PORT]/PATH", marker.ErrUsage, fs.Arg(0))
	}
	addr := u.Host
	if u.Port() != "" {
		if err := hostPort(u.Host); err != nil {
			return err
		}
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "https" {
		tc.Enabled = true
	} else if tc.Enabled {
		return fmt.Errorf("%w: --tls with an http:// URL (use https://)", marker.ErrUsage)
	}
	hs, err := tc.handshake(client, addr, "http/1.1")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := dial(ctx, addr, hs)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUser-Agent: drainwell-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return err
	}
	// Response heads, interim (1xx) ones included, of at most 64 KiB.
	br := bufio.NewReader(io.LimitReader(conn, maxResponseHead))
	code, err := readFinalHead(br)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no response within %s", *timeout)
		}
		return err
	}
	// The server closes after its response (Connection: close): read to
	// its end, a little of it, so that our close sends no reset.
	_ = conn.SetReadDeadline(earliest(deadline, time.Now().Add(200*time.Millisecond)))
	_, _ = io.Copy(io.Discard, io.LimitReader(io.MultiReader(br, conn), 64<<10))
	if code < 200 || code > 399 {
		return fmt.Errorf("status %d", code)
	}
	return nil
}

// maxResponseHead bounds the status lines and headers a probe reads.
const maxResponseHead = 64 << 10

// readFinalHead reads response heads as net/http's client (and so the
// kubelet) does: it skips interim 1xx responses (100 Continue, 103 Early
// Hints; 101 is final) and returns the final status once its header block
// is complete, up to the empty line.
func readFinalHead(br *bufio.Reader) (int, error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("connection closed before a status line")
			}
			return 0, fmt.Errorf("reading status line: %w", err)
		}
		code, err := statusCode(line)
		if err != nil {
			return 0, err
		}
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				if errors.Is(err, io.EOF) {
					return 0, fmt.Errorf("status %d: incomplete response headers (no end, or more than %d KiB)", code, maxResponseHead>>10)
				}
				return 0, fmt.Errorf("reading headers: %w", err)
			}
			if h == "\r\n" || h == "\n" {
				break
			}
		}
		if code >= 200 || code == 101 {
			return code, nil
		}
	}
}

// statusCode parses "HTTP/1.1 200 OK\r\n".
func statusCode(line string) (int, error) {
	proto, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	codeText, _, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if !strings.HasPrefix(proto, "HTTP/") || err != nil || len(codeText) != 3 {
		return 0, fmt.Errorf("not an HTTP status line: %q", line)
	}
	return code, nil
}

func tcpCheck(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flagSet("tcp", stderr)
	timeout := fs.Duration("timeout", time.Second, "give up after this long")
	if err := parse(fs, args, 1, "one HOST:PORT"); err != nil {
		return err
	}
	if err := positive("--timeout", *timeout); err != nil {
		return err
	}
	if err := hostPort(fs.Arg(0)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return err
	}
	return conn.Close()
}

func sleepCmd(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 1 && strings.HasPrefix(args[0], "-") {
		if d, err := time.ParseDuration(args[0]); err == nil { // -1s is a duration, not a flag
			return fmt.Errorf("%w: DURATION=%s is negative", marker.ErrUsage, d)
		}
	}
	fs := flagSet("sleep", stderr)
	if err := parse(fs, args, 1, "one DURATION"); err != nil {
		return err
	}
	d, err := time.ParseDuration(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: %v", marker.ErrUsage, err)
	}
	if d < 0 {
		return fmt.Errorf("%w: DURATION=%s is negative", marker.ErrUsage, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// forwarded are the signals run passes on to its child.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// run starts a child, keeps the marker fresh while the child runs (and is
// not stopped), forwards signals to it, reaps every zombie when it is PID 1,
// removes the marker when the child exits and returns the child's status
// (128+N when signal N killed it).
func run(ctx context.Context, name string, args []string, env Env, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s run: %v\n", name, err)
		return marker.ExitCode(err)
	}
	fs := flagSet("run", stderr)
	path, maxAge, err := liveFlags(fs, args, -1, "", env)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		return 0
	}
	if err != nil {
		return fail(err)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fail(fmt.Errorf("%w: want -- CMD [ARGS...]", marker.ErrUsage))
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	m := &marker.Marker{Path: path}
	if err := m.Create(); err != nil {
		return fail(fmt.Errorf("%w: LIVE_FILE=%s: %v", marker.ErrUsage, path, err))
	}
	childStderr, flush, err := fileFor(stderr)
	if err != nil {
		_ = m.Remove() // the error below is the one to report
		return fail(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...) // #nosec G204 -- running the user's command is what `probe run` is for
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, childStderr
	err = cmd.Start()
	defer flush()
	if err != nil {
		_ = m.Remove() // the error below is the one to report
		fmt.Fprintf(stderr, "%s run: %v\n", name, err)
		return startFailure(err)
	}
	child := cmd.Process.Pid

	beat, stopBeat := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		if iv := marker.HeartbeatInterval(maxAge); iv > 0 {
			m.Heartbeat(beat, iv, func() bool { return running(child) }, func(err error) {
				fmt.Fprintf(stderr, "%s run: heartbeat: %v\n", name, err)
			})
		}
	}()

	exited := make(chan syscall.WaitStatus, 1)
	go reap(child, os.Getpid() == 1, exited)
	for {
		select {
		case sig := <-sigs:
			_ = syscall.Kill(child, sig.(syscall.Signal)) // ESRCH: it exited; the reaper reports it
		case ws := <-exited:
			stopBeat()
			<-beating
			if err := m.Remove(); err != nil {
				fmt.Fprintf(stderr, "%s run: %v\n", name, err)
			}
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

// startFailure is the exit status of a command that could not be started,
// as a shell's: 127 when it is not found, 126 when it cannot be executed.
func startFailure(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return 127
	}
	return 126
}

// reap waits for the child. As PID 1 it waits for any process, so that
// orphans re-parented to it do not stay zombies.
func reap(child int, pid1 bool, exited chan<- syscall.WaitStatus) {
	target := child
	if pid1 {
		target = -1
	}
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(target, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			// ECHILD: nothing left to wait for; report a failure.
			exited <- syscall.WaitStatus(1 << 8)
			return
		}
		if pid == child {
			exited <- ws
			return
		}
	}
}

// running reports whether pid exists and is not stopped (SIGSTOP) or a
// zombie, from /proc/PID/stat; a stopped child must let the marker go stale.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold spaces or parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	switch b[i+2] {
	case 'T', 't', 'Z', 'X':
		return false
	}
	return true
}

// fileFor returns a file the child can write to directly for w. exec.Cmd
// copies into a writer that is not a file in a goroutine that only
// Cmd.Wait waits for, and run reaps with wait4 instead; so for such a
// writer (in tests) it makes a pipe, and flush closes the parent's end and
// waits, briefly, for the copy.
func fileFor(w io.Writer) (f *os.File, flush func(), err error) {
	if f, ok := w.(*os.File); ok {
		return f, func() {}, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(w, r) // ends when the child closes its end
		_ = r.Close()
		close(copied)
	}()
	return pw, func() {
		_ = pw.Close() // the parent's copy; the child has its own
		select {
		case <-copied:
		case <-time.After(time.Second): // a grandchild still holds it
		}
	}, nil
}

// version is the module version the binary was built from (go install
// ...@v0.1.0 records it; a build in the repository says "(devel)"), with
// the Go release.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return bi.Main.Version + " " + bi.GoVersion
}
