// Command bench measures what users pick a probe helper and a drain by,
// side by side in one run on this machine, and prints one markdown table of
// figures against their targets (written to BENCHMARKS.md too):
//
//  1. exec probe cost: probe live and app live against cat on the same
//     fresh marker, alternating, median wall and CPU ratios, peak RSS;
//
//  2. binary sizes, stripped; probe (plain) and probe-tls (TLS) against
//     grpc-health-probe (built from the module proxy): size, exec wall and
//     CPU on the same server; probe live against the build before probe grpc;
//
//  3. the request path: a trivial handler bare and behind pkg/health
//     (go test -bench in pkg/health);
//
//  4. drain seen: SIGTERM to the first /ready that says draining;
//
//  5. shutdown promptness: exit time beyond what the drain must wait for;
//
//  6. heartbeat: CPU per hour to keep the marker fresh;
//
//  7. readiness probe kinds for a gRPC service: httpGet on the admin port
//     against the native grpc probe, CPU per probe;
//
//  8. rollout: the highest rate the rollout harness sustains with zero loss.
//
//     go run ./sim/cmd/bench [-runs 300] [-out BENCHMARKS.md] [-rollout=false] [-only grpcprobe,exec]
//
// With -only, the partial table goes to stdout, and to a file only when -out
// is given.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/internal/marker"
	"github.com/drainwell/drainwell/sim/rollout"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// section is one part of the run: its name for -only, what it logs, and
// its measurement.
type section struct {
	name, what string
	measure    func() ([]row, error)
}

// row is one figure of the table.
type row struct {
	what, figure, target, verdict string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 300, "exec runs of each probe command")
	out := fs.String("out", "BENCHMARKS.md", "write the report here (empty: stdout only)")
	rollout := fs.Bool("rollout", true, "search the rollout harness's highest zero-loss rate")
	only := fs.String("only", "", "run only these sections, comma-separated: exec, grpcprobe, requestpath, metrics, drain, readiness, rollout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if *only != "" && !outSet {
		*out = ""
	}
	want := func(section string) bool {
		return *only == "" || slices.Contains(strings.Split(*only, ","), section)
	}
	dir, err := os.MkdirTemp("", "bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	bins, err := harness.Build(dir, "github.com/drainwell/drainwell/cmd/app", "github.com/drainwell/drainwell/cmd/probe",
		"github.com/drainwell/drainwell/cmd/probe-tls")
	if err != nil {
		return err
	}
	floor, err := buildFloor(dir)
	if err != nil {
		return err
	}
	bins["go-floor"] = floor

	sections := []section{
		{"exec", fmt.Sprintf("exec probe cost: %d alternating runs each", *runs), func() ([]row, error) {
			r, err := execCost(dir, bins, *runs)
			return append(r, sizes(bins)...), err
		}},
		{"grpcprobe", "probe grpc against " + grpcHealthProbe, func() ([]row, error) { return probeVsGRPCHealthProbe(dir, bins["probe"], bins["probe-tls"], *runs) }},
		{"requestpath", "request path: go test -bench ./pkg/health", func() ([]row, error) { return requestPath(ctx) }},
		{"metrics", "metrics overhead: go test -bench ./pkg/metrics", func() ([]row, error) { return metricsOverhead(ctx) }},
		{"drain", "readiness flip and shutdown promptness", func() ([]row, error) {
			r, err := drainTimes(dir, bins["app"])
			return append(r, heartbeat(dir)), err
		}},
		{"readiness", "readiness probe kinds", func() ([]row, error) { return readinessKinds(dir, bins["app"]) }},
		{"rollout", "rollout: highest zero-loss rate", func() ([]row, error) {
			if !*rollout {
				return nil, nil
			}
			return rolloutRate(ctx, dir, logf)
		}},
	}
	for _, name := range strings.Split(*only, ",") {
		if name != "" && !slices.ContainsFunc(sections, func(s section) bool { return s.name == name }) {
			return fmt.Errorf("-only: no section %q", name)
		}
	}
	var rows []row
	for _, s := range sections {
		if !want(s.name) {
			continue
		}
		logf("%s", s.what)
		r, err := s.measure()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		rows = append(rows, r...)
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured by `make bench` (`go run ./sim/cmd/bench`) on %s, %s.\n", machine(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Ratios are medians measured side by side in one run, alternating the commands; this machine is noisy.\n\n")
	fmt.Fprintln(&b, "| # | figure | measured | target | |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- | --- |")
	for i, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", i+1, r.what, r.figure, r.target, r.verdict)
	}
	stdout.Write(b.Bytes())
	if *out != "" {
		return os.WriteFile(*out, b.Bytes(), 0o644)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func machine() string {
	model := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si syscall.Sysinfo_t
	syscall.Sysinfo(&si)
	var un syscall.Utsname
	syscall.Uname(&un)
	kernel := strings.TrimRight(string(bytesOf(un.Release[:])), "\x00")
	return fmt.Sprintf("%d cores (%s), %.0f GiB, Linux %s, %s", runtime.NumCPU(), model,
		float64(si.Totalram)*float64(si.Unit)/(1<<30), kernel, runtime.Version())
}

func bytesOf(a []int8) []byte {
	b := make([]byte, len(a))
	for i, c := range a {
		b[i] = byte(c)
	}
	return b
}

// buildFloor builds the smallest Go program that does what live does (one
// lstat and an age check): the floor for any Go probe.
func buildFloor(dir string) (string, error) {
	return buildProgram(dir, "go-floor", `package main

import (
	"os"
	"time"
)

func main() {
	fi, err := os.Lstat(os.Args[1])
	if err != nil || time.Since(fi.ModTime()) > time.Hour {
		os.Exit(1)
	}
}
`)
}

// buildTLSFloor builds the smallest Go program that dials TLS: the floor
// for the size of any Go probe with TLS.
func buildTLSFloor(dir string) (string, error) {
	return buildProgram(dir, "go-tls-floor", `package main

import (
	"crypto/tls"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", os.Args[1], nil)
	if err != nil {
		os.Exit(1)
	}
	c.Close()
}
`)
}

// buildProgram builds the one-file program prog, static and stripped, as
// dir/name.
func buildProgram(dir, name, prog string) (string, error) {
	src := filepath.Join(dir, name+"-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module "+name+"\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v %s", name, err, b)
	}
	return bin, nil
}

type sample struct{ wall, cpu, rss []float64 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// execCost runs each command on the same fresh marker, alternating.
func execCost(dir string, bins map[string]string, runs int) ([]row, error) {
	live := filepath.Join(dir, "live")
	if err := (&marker.Marker{Path: live}).Create(); err != nil {
		return nil, err
	}
	env := []string{"LIVE_FILE=" + live, "LIVE_MAX_AGE=1h"}
	cmds := []struct {
		name string
		argv []string
	}{
		{"cat", []string{"cat", live}},
		{"go-floor", []string{bins["go-floor"], live}},
		{"probe live", []string{bins["probe"], "live"}},
		{"app live", []string{bins["app"], "live"}},
	}
	if _, err := exec.LookPath("cat"); err != nil {
		return nil, err
	}
	samples := make([]sample, len(cmds))
	for i := range runs {
		for j := range cmds {
			k := (i + j) % len(cmds) // rotate the order too
			c := exec.Command(cmds[k].argv[0], cmds[k].argv[1:]...)
			c.Env = env
			t0 := time.Now()
			if err := c.Run(); err != nil {
				return nil, fmt.Errorf("%s: %w", cmds[k].name, err)
			}
			wall := time.Since(t0)
			ru := c.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			samples[k].wall = append(samples[k].wall, float64(wall))
			samples[k].cpu = append(samples[k].cpu, float64(cpu))
			samples[k].rss = append(samples[k].rss, float64(ru.Maxrss))
		}
	}
	cat := samples[0]
	var rows []row
	for k := 1; k < len(cmds); k++ {
		s := samples[k]
		wr := median(s.wall) / median(cat.wall)
		cr := median(s.cpu) / max(median(cat.cpu), 1)
		target, ok := "", true
		switch cmds[k].name {
		case "probe live":
			target, ok = "<= 1.6x cat", wr <= 1.6
		case "app live":
			target, ok = "<= 2.5x cat", wr <= 2.5
		case "go-floor":
			target = "reference: the floor for Go"
		}
		v := verdict(ok)
		if target == "" || strings.HasPrefix(target, "reference") {
			v = ""
		}
		rows = append(rows, row{
			what: "exec cost: " + cmds[k].name,
			figure: fmt.Sprintf("wall %.2fx cat (%s vs %s), CPU %.2fx, peak RSS %.1f MiB (cat %.1f)",
				wr, time.Duration(median(s.wall)).Round(time.Microsecond), time.Duration(median(cat.wall)).Round(time.Microsecond),
				cr, median(s.rss)/1024, median(cat.rss)/1024),
			target: target, verdict: v,
		})
	}
	return rows, nil
}

func sizes(bins map[string]string) []row {
	var rows []row
	for _, name := range []string{"app"} { // probe: against grpc-health-probe, below
		fi, err := os.Stat(bins[name])
		if err != nil {
			continue
		}
		mib := float64(fi.Size()) / (1 << 20)
		rows = append(rows, row{what: "binary size, stripped: " + name, figure: fmt.Sprintf("%.2f MiB", mib), target: "as small as its dependencies allow"})
	}
	return rows
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+(\d+) B/op\s+(\d+) allocs/op)?`)

// requestPath runs pkg/health's benchmarks, bare and wrapped in turn, eight
// times over, in alternating order (go test -count would run all of one
// before the other).
// parseBench reads go test -bench output: each benchmark's ns/op and
// allocs/op, one value per run.
func parseBench(out []byte) (ns, allocs map[string][]float64) {
	ns, allocs = map[string][]float64{}, map[string][]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		ns[m[1]] = append(ns[m[1]], v)
		if m[4] != "" {
			a, _ := strconv.ParseFloat(m[4], 64)
			allocs[m[1]] = append(allocs[m[1]], a)
		}
	}
	return ns, allocs
}

// benchRuns runs go test -bench pattern in pkg 8 times, setting reverseEnv
// every other time: which variant runs first matters, so it alternates.
func benchRuns(ctx context.Context, pattern, pkg, reverseEnv string) ([]byte, error) {
	var b []byte
	for i := range 8 {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", pattern,
			"-benchmem", "-count", "1", "-benchtime", "300ms", pkg)
		if i%2 == 1 {
			cmd.Env = append(os.Environ(), reverseEnv+"=1")
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go test -bench: %v\n%s", err, out)
		}
		b = append(b, out...)
	}
	return b, nil
}

// metricsOverhead is the request path with pkg/metrics' collector
// registered and scraped against without, alternating which runs first.
func metricsOverhead(ctx context.Context) ([]row, error) {
	b, err := benchRuns(ctx, "^BenchmarkRequestPath$", "./pkg/metrics/", "METRICS_BENCH_REVERSE")
	if err != nil {
		return nil, err
	}
	ns, allocs := parseBench(b)
	on, off := "RequestPath/on", "RequestPath/off"
	if len(ns[on]) == 0 || len(ns[off]) == 0 {
		return nil, fmt.Errorf("no result in:\n%s", b)
	}
	ratio := median(ns[on]) / median(ns[off])
	extra := median(allocs[on]) - median(allocs[off])
	return []row{{what: "request path over HTTP with metrics on (collector registered, scraped every second) / off",
		figure: fmt.Sprintf("%.3fx (%.0f vs %.0f ns/op, medians of 8 alternating runs), allocs/op %v vs %v",
			ratio, median(ns[on]), median(ns[off]), median(allocs[on]), median(allocs[off])),
		target: "<= 1.03x, no extra allocation", verdict: verdict(ratio <= 1.03 && extra <= 0)}}, nil
}

func requestPath(ctx context.Context) ([]row, error) {
	b, err := benchRuns(ctx, "^Benchmark(Handler|HTTP)$", "./pkg/health/", "HEALTH_BENCH_REVERSE")
	if err != nil {
		return nil, err
	}
	ns, allocRuns := parseBench(b)
	allocs := map[string]float64{} // the last run's, as before
	for k, v := range allocRuns {
		allocs[k] = v[len(v)-1]
	}
	need := []string{"Handler/bare", "Handler/wrapped", "Handler/ready", "Handler/live", "HTTP/bare", "HTTP/wrapped"}
	for _, k := range need {
		if len(ns[k]) == 0 {
			return nil, fmt.Errorf("no result for %s in:\n%s", k, b)
		}
	}
	inproc := median(ns["Handler/wrapped"]) / median(ns["Handler/bare"])
	httpRatio := median(ns["HTTP/wrapped"]) / median(ns["HTTP/bare"])
	extraAllocs := allocs["HTTP/wrapped"] - allocs["HTTP/bare"]
	return []row{
		{what: "request path over HTTP (RunParallel, keep-alive, loopback): wrapped / bare",
			figure: fmt.Sprintf("%.3fx (%.0f vs %.0f ns/op), allocs/op %v vs %v",
				httpRatio, median(ns["HTTP/wrapped"]), median(ns["HTTP/bare"]), allocs["HTTP/wrapped"], allocs["HTTP/bare"]),
			target: "<= 1.05x, no extra allocation", verdict: verdict(httpRatio <= 1.05 && extraAllocs <= 0)},
		{what: "handler in process (RunParallel): wrapped / bare trivial handler",
			figure: fmt.Sprintf("%.2fx (%.1f vs %.1f ns/op, +%.1f ns), allocs/op %v vs %v",
				inproc, median(ns["Handler/wrapped"]), median(ns["Handler/bare"]),
				median(ns["Handler/wrapped"])-median(ns["Handler/bare"]), allocs["Handler/wrapped"], allocs["Handler/bare"]),
			target: "absolute cost of the wrapper (informational)", verdict: ""},
		{what: "/ready and /live in process",
			figure: fmt.Sprintf("/ready %.0f ns/op, %v allocs/op; /live %.0f ns/op, %v allocs/op",
				median(ns["Handler/ready"]), allocs["Handler/ready"], median(ns["Handler/live"]), allocs["Handler/live"]),
			target: "(informational)", verdict: ""},
	}, nil
}

// drainTimes measures the readiness flip and the shutdown promptness on
// the real binary.
func drainTimes(dir, app string) ([]row, error) {
	const n = 40
	var flips, idle, busy []float64
	for i := range n {
		live := filepath.Join(dir, fmt.Sprintf("drain-%d", i))
		os.MkdirAll(live, 0o755)
		env := []string{"ADDR=127.0.0.1:0", "LIVE_FILE=" + filepath.Join(live, "live"),
			"DRAIN_DELAY=200ms", "IDLE_CLOSE=50ms", "SHUTDOWN_TIMEOUT=3s", "WORK_DELAY=400ms"}
		p, err := harness.Start(app, env)
		if err != nil {
			return nil, err
		}
		url := "http://" + p.Addr
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
		get := func(path string) (string, time.Time, error) {
			resp, err := client.Get(url + path)
			if err != nil {
				return "", time.Time{}, err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), time.Now(), nil
		}
		withWork := i%2 == 1
		var mustWait time.Time
		if withWork {
			resp, err := client.Post(url+"/incr", "", nil)
			if err != nil {
				p.Kill()
				return nil, err
			}
			resp.Body.Close()
			mustWait = time.Now().Add(400 * time.Millisecond) // the work's end, at the latest
		}
		t0 := time.Now()
		p.Signal(syscall.SIGTERM)
		for {
			body, at, err := get("/ready")
			if err != nil {
				p.Kill()
				return nil, err
			}
			if strings.Contains(body, "draining") {
				flips = append(flips, float64(at.Sub(t0)))
				break
			}
		}
		if _, err := p.Wait(10 * time.Second); err != nil {
			p.Kill()
			return nil, err
		}
		exited := time.Now()
		if d := t0.Add(200 * time.Millisecond); d.After(mustWait) {
			mustWait = d
		}
		over := float64(exited.Sub(mustWait))
		if withWork {
			busy = append(busy, over)
		} else {
			idle = append(idle, over)
		}
	}
	ms := func(v float64) string { return time.Duration(v).Round(10 * time.Microsecond).String() }
	p99flip := pct(flips, 0.99)
	return []row{
		{what: fmt.Sprintf("drain seen: SIGTERM to the first /ready that says draining (%d runs)", len(flips)),
			figure: fmt.Sprintf("p50 %s, p99 %s", ms(median(flips)), ms(p99flip)),
			target: "p99 < 5 ms", verdict: verdict(p99flip < float64(5*time.Millisecond))},
		{what: fmt.Sprintf("shutdown promptness, idle: exit minus DRAIN_DELAY end (%d runs)", len(idle)),
			figure: fmt.Sprintf("p50 %s, p99 %s", ms(median(idle)), ms(pct(idle, 0.99))),
			target: "p99 <= 50 ms", verdict: verdict(pct(idle, 0.99) <= float64(50*time.Millisecond))},
		{what: fmt.Sprintf("shutdown promptness, work in flight: exit minus the work's end (%d runs)", len(busy)),
			figure: fmt.Sprintf("p50 %s, p99 %s", ms(median(busy)), ms(pct(busy, 0.99))),
			target: "p99 <= 50 ms", verdict: verdict(pct(busy, 0.99) <= float64(50*time.Millisecond))},
	}, nil
}

// heartbeat measures the CPU of one marker refresh and scales it to an hour
// at the default LIVE_MAX_AGE (30s: a beat every 10s).
func heartbeat(dir string) row {
	m := &marker.Marker{Path: filepath.Join(dir, "hb")}
	m.Create()
	const n = 2000
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0 := cpu()
	for range n {
		m.Touch()
	}
	per := (cpu() - c0) / n
	interval := marker.HeartbeatInterval(marker.DefaultMaxAge)
	perHour := per * time.Duration(time.Hour/interval)
	return row{what: "heartbeat: CPU to keep the marker fresh at the defaults",
		figure: fmt.Sprintf("%s per beat, a beat every %s: %s of CPU per hour", per.Round(100*time.Nanosecond), interval, perHour.Round(10*time.Microsecond)),
		target: "(informational)"}
}

// rolloutRate runs the heavy profile, shortened, at rising rates until
// one loses or the load tool cannot keep the rate.
func rolloutRate(ctx context.Context, dir string, logf func(string, ...any)) ([]row, error) {
	env, err := rollout.Setup(filepath.Join(dir, "rollout"), "deploy")
	if err != nil {
		if errors.Is(err, harness.ErrNoRedis) {
			return []row{{what: "rollout", figure: "skipped: " + err.Error()}}, nil
		}
		return nil, err
	}
	var heavy rollout.Profile
	for _, p := range rollout.Profiles(true) {
		if p.Name == "heavy" {
			heavy = p
		}
	}
	best, bestRow := 0, rollout.Row{}
	var bestSelf, bestChildren time.Duration
	stopped := ""
	for _, rate := range []int{1000, 2000, 3000, 4000} {
		p := heavy
		p.Rate = rate
		self0, children0 := cpuTimes()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		res, err := rollout.Run(rctx, env, p)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			stopped = fmt.Sprintf("at %d req/s the run did not finish within 3 minutes", rate)
			break
		}
		if err != nil {
			return nil, err
		}
		self1, children1 := cpuTimes()
		r := res.Row
		achieved := float64(r.Sent) / p.Duration.Seconds()
		logf("  %d req/s: sent %d (%.0f/s), errors %d, lost %d, p99 %s", rate, r.Sent, achieved, r.Errors, r.Lost, r.P99)
		if r.Lossy() {
			var kinds []string
			for k, n := range r.ErrorKinds {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
			}
			slices.Sort(kinds)
			stopped = fmt.Sprintf("%d req/s lost %d requests (%s) and %d increments, p99 %s",
				rate, r.Errors, strings.Join(kinds, ", "), r.Lost, r.P99.Round(time.Millisecond))
			break
		}
		if achieved < 0.95*float64(rate) {
			stopped = fmt.Sprintf("at %d req/s the load tool sent only %.0f/s", rate, achieved)
			break
		}
		best, bestRow = rate, r
		bestSelf, bestChildren = self1-self0, children1-children0
	}
	if stopped == "" {
		stopped = "every rate tried was sustained"
	}
	// Where the CPU went at the best rate: this process is the load tool
	// (vegeta), the Service proxy and the kubelet; its children are the
	// pods, their exec probes and Redis.
	total := bestSelf + bestChildren
	share := 0.0
	if total > 0 {
		share = float64(bestSelf) / float64(total) * 100
	}
	return []row{{what: "rollout harness: highest rate with zero loss through two rolling updates (3 replicas, 12 s)",
		figure: fmt.Sprintf("%d req/s (p50 %s, p99 %s); %s. CPU at %d req/s: load tool + proxy %s (%.0f%%), pods + Redis %s",
			best, bestRow.P50.Round(10*time.Microsecond), bestRow.P99.Round(10*time.Microsecond), stopped,
			best, bestSelf.Round(100*time.Millisecond), share, bestChildren.Round(100*time.Millisecond)),
		target: "(report)"}}, nil
}

// cpuTimes returns the CPU used so far by this process and by its reaped
// children.
func cpuTimes() (self, children time.Duration) {
	var s, c syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	sum := func(r syscall.Rusage) time.Duration { return time.Duration(r.Utime.Nano() + r.Stime.Nano()) }
	return sum(s), sum(c)
}
