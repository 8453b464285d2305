package consumer_test

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/drainwell/drainwell/internal/testutil"
)

const websocketPath = "github.com/coder/websocket"

// longLivedFiles are docs/long-lived.md's blocks, each after its marker
// "<!-- compiled by e2e/consumer: events/NAME -->": one module.
var longLivedFiles = []string{"feed.go", "sse.go", "websocket.go", "main.go"}

// The long-lived service's settings in the test: a short delay, a window
// the endings must be spread over, and a deadline the clean drain must
// beat.
const (
	llDrainDelay      = 200 * time.Millisecond
	llShutdownTimeout = 6 * time.Second
	llLeaveWindow     = "2s"
	// minSpread is the least time between the first and the last client's
	// ending: the window asks the six at 0, 1/6, ... 5/6 of 2 s (2.6 s
	// with the default window), and timers never fire early.
	minSpread = time.Second
)

// TestLongLivedDoc builds docs/long-lived.md's service (an event feed
// served as SSE and over a WebSocket, each handler declared with
// Server.LongLived) as a new module that imports the library from outside
// and github.com/coder/websocket, runs it, and drains it under three SSE
// and three WebSocket clients: each client's stream ends in turn (SSE: the
// retry: hint, then a clean end; WebSocket: close 1001), the endings are
// spread over the leave window, and the process exits 0 before its
// deadline with every request counted as left. The controls: with
// LEAVE_WINDOW=none every client leaves within the same second (the
// spread check tells); and the same code with the LongLived calls taken
// out is held to its deadline (exit 4) with every client cut.
func TestLongLivedDoc(t *testing.T) {
	root, lib := checkout(t)
	doc := filepath.Join(root, "docs", "long-lived.md")
	code := map[string]string{}
	for _, name := range longLivedFiles {
		code[name] = readmeBlock(t, doc, "<!-- compiled by e2e/consumer: events/"+name+" -->")
	}
	// The control: the same handlers, never declared long-lived.
	const declared, undeclared = "srv.LongLived(r.Context())", "r.Context(), func() {}"
	control := map[string]string{}
	n := 0
	for name, src := range code {
		n += strings.Count(src, declared)
		control[name] = strings.ReplaceAll(src, declared, undeclared)
	}
	if n != 2 {
		t.Fatalf("docs/long-lived.md declares %d requests with %q, want 2 (SSE and WebSocket): the control would not be the same code", n, declared)
	}
	dir := t.TempDir()
	bin := buildEvents(t, root, lib.Go.Version, filepath.Join(dir, "events"), code, true)
	controlBin := buildEvents(t, root, lib.Go.Version, filepath.Join(dir, "control"), control, false)
	env := func(name, window string) []string {
		return []string{"ADDR=127.0.0.1:0", "LIVE_FILE=" + filepath.Join(dir, name+".live"),
			"DRAIN_DELAY=" + llDrainDelay.String(), "SHUTDOWN_TIMEOUT=" + llShutdownTimeout.String(),
			"LEAVE_WINDOW=" + window}
	}

	t.Run("in turn", func(t *testing.T) {
		svc := startService(t, bin, env("events", llLeaveWindow), "addr")
		ended := connectClients(t, svc.addr)
		signalled := time.Now()
		svc.cmd.Process.Signal(syscall.SIGTERM)
		endings := receiveEndings(t, ended, signalled)
		err := testutil.Receive(t, "the drain", svc.exited)
		elapsed := time.Since(signalled)
		for _, e := range endings {
			if !e.left {
				t.Errorf("%s: %s, want it to leave in turn (%s)", e.client, e.how, wantLeft(e.client))
			}
			if e.at < llDrainDelay {
				t.Errorf("%s ended at +%s, before the drain delay (%s) was over", e.client, e.at, llDrainDelay)
			}
		}
		if spread := endings[len(endings)-1].at - endings[0].at; spread < minSpread {
			t.Errorf("the clients' endings are spread over %s, want at least %s (LEAVE_WINDOW=%s)", spread, minSpread, llLeaveWindow)
		}
		if err != nil || elapsed >= llShutdownTimeout {
			t.Errorf("exit after %s: %v, want exit 0 before SHUTDOWN_TIMEOUT (%s)", elapsed, err, llShutdownTimeout)
		}
		report := svc.line(`"msg":"drain report"`)
		for _, want := range []string{`"end":"clean"`, `"long_lived_asked":6,`, `"long_lived_left":6,`, `"long_lived_cut":0,`} {
			if !strings.Contains(report, want) {
				t.Errorf("the drain report has no %s: %s", want, report)
			}
		}
		if t.Failed() {
			t.Logf("the service's log:\n%s", svc.out.String())
		}
	})

	// The spread's control: every client leaves in turn, all at once.
	t.Run("control: LEAVE_WINDOW=none", func(t *testing.T) {
		svc := startService(t, bin, env("none", "none"), "addr")
		ended := connectClients(t, svc.addr)
		signalled := time.Now()
		svc.cmd.Process.Signal(syscall.SIGTERM)
		endings := receiveEndings(t, ended, signalled)
		svc.exitClean(t, 0)
		for _, e := range endings {
			if !e.left {
				t.Errorf("control: %s: %s, want it to leave (%s)", e.client, e.how, wantLeft(e.client))
			}
		}
		if spread := endings[len(endings)-1].at - endings[0].at; spread >= minSpread {
			t.Errorf("control: with LEAVE_WINDOW=none the endings are spread over %s, want less than %s: the spread check cannot tell", spread, minSpread)
		}
	})

	t.Run("control: never declared", func(t *testing.T) {
		svc := startService(t, controlBin, env("control", llLeaveWindow), "addr")
		ended := connectClients(t, svc.addr)
		signalled := time.Now()
		svc.cmd.Process.Signal(syscall.SIGTERM)
		endings := receiveEndings(t, ended, signalled)
		err := testutil.Receive(t, "the drain", svc.exited)
		elapsed := time.Since(signalled)
		for _, e := range endings {
			if e.left || !strings.HasPrefix(e.how, "cut") {
				t.Errorf("control: %s: %s, want it cut at the deadline", e.client, e.how)
			}
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 4 {
			t.Errorf("control: exit after %s: %v, want exit 4 (held to the deadline)", elapsed, err)
		}
		report := svc.line(`"msg":"drain report"`)
		for _, want := range []string{`"end":"deadline"`, `"long_lived_left":0,`} {
			if !strings.Contains(report, want) {
				t.Errorf("control: the drain report has no %s: %s", want, report)
			}
		}
		t.Logf("control: exit %v after %s; the clients cut at +%s to +%s", err, elapsed.Round(time.Millisecond),
			endings[0].at.Round(time.Millisecond), endings[len(endings)-1].at.Round(time.Millisecond))
	})
}

// buildEvents writes the files as a new module in dir that requires the
// library (replaced by the checkout) and github.com/coder/websocket at
// e2e's own version, tidies it (its go line must not move), vets it if
// asked, and builds it.
func buildEvents(t *testing.T, root, goVersion, dir string, files map[string]string, vet bool) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "go.mod"), "module example.com/events\n\ngo "+goVersion+"\n\nrequire (\n"+
		"\t"+libPath+" v0.0.0\n\t"+websocketPath+" "+websocketVersion(t)+"\n)\n\n"+
		"replace "+libPath+" => "+root+"\n")
	for name, src := range files {
		write(t, filepath.Join(dir, name), src)
	}
	goCmd(t, dir, "mod", "tidy")
	if after := parseGoMod(t, filepath.Join(dir, "go.mod")); after.Go.Version != goVersion || after.Toolchain != nil {
		t.Fatalf("go mod tidy moved the go line or added a toolchain:\n%s", mustRead(t, filepath.Join(dir, "go.mod")))
	}
	if vet {
		goCmd(t, dir, "vet", ".")
	}
	bin := filepath.Join(dir, "events")
	goCmd(t, dir, "build", "-o", bin, ".")
	return bin
}

// websocketVersion is the version of github.com/coder/websocket that e2e's
// go.mod requires: the consumer's server and the test's clients agree.
func websocketVersion(t *testing.T) string {
	t.Helper()
	for _, r := range parseGoMod(t, "../go.mod").Require {
		if r.Mod.Path == websocketPath {
			return r.Mod.Version
		}
	}
	t.Fatalf("e2e/go.mod does not require %s", websocketPath)
	return ""
}

// ending is how a client's stream ended.
type ending struct {
	client string
	at     time.Duration // from the signal
	left   bool          // in turn: SSE's retry: then a clean end, WebSocket's close 1001
	how    string
	events int // received
}

func wantLeft(client string) string {
	if strings.HasPrefix(client, "sse") {
		return "the retry: hint, then a clean end"
	}
	return "close status 1001"
}

// The clients' ends, as they happen (wall clock, made relative later).
type end struct {
	ending
	wall time.Time
}

// connectClients connects three SSE and three WebSocket clients, one at a
// time and alternating, each once the one before has its first event (so
// that each is declared, oldest first). The third of each resumes after
// event 1 and must get event 2 first. It returns the channel each
// client's ending arrives on.
func connectClients(t *testing.T, addr string) <-chan end {
	t.Helper()
	ended := make(chan end, 6)
	for i := range 3 {
		resume := ""
		if i == 2 {
			resume = "1"
		}
		if first := sseClient(t, addr, fmt.Sprintf("sse %d", i), resume, ended); resume != "" && first != 2 {
			t.Fatalf("an SSE client with Last-Event-ID: 1 got event %d first, want 2", first)
		}
		if first := wsClient(t, addr, fmt.Sprintf("websocket %d", i), resume, ended); resume != "" && first != 2 {
			t.Fatalf("a WebSocket client with ?after=1 got event %d first, want 2", first)
		}
	}
	return ended
}

// receiveEndings returns the six clients' endings, the first first,
// relative to signalled.
func receiveEndings(t *testing.T, ended <-chan end, signalled time.Time) []ending {
	t.Helper()
	var endings []ending
	for range 6 {
		e := testutil.Receive(t, "a client's stream to end", ended)
		e.at = e.wall.Sub(signalled)
		endings = append(endings, e.ending)
	}
	slices.SortFunc(endings, func(a, b ending) int { return cmp.Compare(a.at, b.at) })
	for _, e := range endings {
		t.Logf("+%-8s %-12s %s after %d events", e.at.Round(time.Millisecond), e.client, e.how, e.events)
	}
	return endings
}

// sseClient opens an event stream (resuming after lastID unless it is
// empty), reads it until it ends and sends how on ended. It returns the
// first event's id, once it has arrived.
func sseClient(t *testing.T, addr, name, lastID string, ended chan<- end) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	// A connection of its own, closed after the stream, as a browser's
	// EventSource has.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("%s: %s %q, want 200 text/event-stream", name, resp.Status, resp.Header.Get("Content-Type"))
	}
	first := make(chan int, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var prev, events int
		var retry, problem string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id, _ := strconv.Atoi(strings.TrimPrefix(line, "id: "))
				switch {
				case events == 0:
					first <- id
				case id != prev+1 && problem == "":
					problem = fmt.Sprintf("event %d after %d", id, prev)
				}
				if retry != "" && problem == "" {
					problem = "an event after the retry: hint"
				}
				prev, events = id, events+1
			case strings.HasPrefix(line, "retry:"):
				retry = line
			}
		}
		e := end{wall: time.Now(), ending: ending{client: name, events: events}}
		switch err := sc.Err(); {
		case problem != "":
			e.how = problem
		case retry != "" && err == nil:
			e.left, e.how = true, "left: "+retry+", then the end of the stream"
		case retry != "":
			e.how = retry + ", then " + err.Error()
		case err != nil:
			e.how = "cut: " + err.Error()
		default:
			e.how = "ended without a retry: hint"
		}
		if events == 0 {
			first <- 0
		}
		ended <- e
	}()
	return testutil.Receive(t, name+"'s first event", first)
}

// wsClient opens a WebSocket (resuming after the event after unless it is
// empty), reads it until it ends and sends how on ended. It returns the
// first event's id, once it has arrived.
func wsClient(t *testing.T, addr, name, after string, ended chan<- end) int {
	t.Helper()
	url := "ws://" + addr + "/socket"
	if after != "" {
		url += "?after=" + after
	}
	ctx := t.Context()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	first := make(chan int, 1)
	go func() {
		defer c.CloseNow()
		var prev, events int
		var problem string
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				e := end{wall: time.Now(), ending: ending{client: name, events: events}}
				switch status := websocket.CloseStatus(err); {
				case problem != "":
					e.how = problem
				case status == websocket.StatusGoingAway:
					e.left, e.how = true, "left: close 1001 "+strconv.Quote(err.Error())
				case status != -1:
					e.how = fmt.Sprintf("closed with status %d", status)
				default:
					e.how = "cut: " + err.Error()
				}
				if events == 0 {
					first <- 0
				}
				ended <- e
				return
			}
			idText, _, _ := strings.Cut(string(msg), " ")
			id, _ := strconv.Atoi(idText)
			switch {
			case events == 0:
				first <- id
			case id != prev+1 && problem == "":
				problem = fmt.Sprintf("event %d after %d", id, prev)
			}
			prev, events = id, events+1
		}
	}()
	return testutil.Receive(t, name+"'s first event", first)
}
