package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/internal/marker"
)

const (
	// grpcHealthProbe is what `probe grpc` replaces, built here from the
	// module proxy as its users build it.
	grpcHealthProbe = "github.com/grpc-ecosystem/grpc-health-probe@v0.4.61"
	// probeBaseline is the last commit before `probe grpc` and TLS: the
	// `probe live` cost that must not grow by more than 5%.
	probeBaseline = "130ef4f1e0786008f6f5b41b9ef08a09f41a2926"
)

// probeVsGRPCHealthProbe measures our probes against grpc-health-probe side
// by side: stripped size, and exec wall and CPU time on the same grpc-go
// server (plain: probe; TLS: probe-tls), paired and alternating; then
// `probe live` against the baseline build, probe-tls's beside it. It builds
// grpc-health-probe and the baseline probe in dir.
func probeVsGRPCHealthProbe(dir, probe, probeTLS string, runs int) ([]row, error) {
	ghp, err := goInstall(dir, grpcHealthProbe)
	if err != nil {
		return nil, err
	}
	baseline, err := buildBaseline(dir)
	if err != nil {
		return nil, err
	}
	tlsFloor, err := buildTLSFloor(dir)
	if err != nil {
		return nil, err
	}

	pki, err := harness.NewPKI(filepath.Join(dir, "pki"), "bench-ca")
	if err != nil {
		return nil, err
	}
	cert, _, _, err := pki.Issue("localhost", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	plain, stopPlain, err := healthServer(nil)
	if err != nil {
		return nil, err
	}
	defer stopPlain()
	tlsAddr, stopTLS, err := healthServer(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		return nil, err
	}
	defer stopTLS()

	var rows []row
	size := func(p string) float64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return float64(fi.Size()) / (1 << 20)
	}
	ours, withTLS, floor, theirs := size(probe), size(probeTLS), size(tlsFloor), size(ghp)
	rows = append(rows,
		row{what: "size, stripped: probe vs grpc-health-probe", target: "<= 1/3",
			figure:  fmt.Sprintf("%.2f MiB vs %.2f MiB = %.2fx", ours, theirs, ours/theirs),
			verdict: verdict(ours/theirs <= 1.0/3)},
		row{what: "size, stripped: probe-tls vs grpc-health-probe", target: "<= 1/3",
			figure: fmt.Sprintf("%.2f MiB = %.2fx (a Go program that only dials TLS: %.2f MiB = %.2fx)",
				withTLS, withTLS/theirs, floor, floor/theirs),
			verdict: verdict(withTLS/theirs <= 1.0/3)})

	for _, c := range []struct {
		name         string
		ours, theirs []string
	}{
		{"plain, probe", []string{probe, "grpc", plain}, []string{ghp, "-addr", plain}},
		{"TLS, probe-tls", []string{probeTLS, "grpc", tlsAddr, "--tls", "--tls-ca-cert", pki.CAFile(), "--tls-server-name", "localhost"},
			[]string{ghp, "-addr", tlsAddr, "-tls", "-tls-ca-cert", pki.CAFile(), "-tls-server-name", "localhost"}},
	} {
		s, err := paired(runs, nil, c.ours, c.theirs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		wr, cr := median(s[0].wall)/median(s[1].wall), median(s[0].cpu)/median(s[1].cpu)
		rows = append(rows, row{what: "exec, one health check (" + c.name + ") vs grpc-health-probe", target: "wall <= 1/2",
			figure: fmt.Sprintf("wall %.2fx (%s vs %s), CPU %.2fx (%s vs %s)", wr,
				dur(median(s[0].wall)), dur(median(s[1].wall)), cr, dur(median(s[0].cpu)), dur(median(s[1].cpu))),
			verdict: verdict(wr <= 0.5)})
	}

	live := filepath.Join(dir, "live-baseline")
	if err := (&marker.Marker{Path: live}).Create(); err != nil {
		return nil, err
	}
	env := []string{"LIVE_FILE=" + live, "LIVE_MAX_AGE=1h"}
	s, err := paired(runs, env, []string{probe, "live"}, []string{baseline, "live"}, []string{probeTLS, "live"})
	if err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	for _, c := range []struct {
		name, target string
		k            int
	}{{"probe", "<= 1.05x", 0}, {"probe-tls", "(for comparison)", 2}} {
		wr := median(s[c.k].wall) / median(s[1].wall)
		r := row{what: "exec: " + c.name + " live vs probe live before probe grpc (" + probeBaseline[:7] + ")", target: c.target,
			figure: fmt.Sprintf("wall %.3fx (%s vs %s), CPU %.3fx", wr, dur(median(s[c.k].wall)), dur(median(s[1].wall)),
				median(s[c.k].cpu)/median(s[1].cpu))}
		if c.k == 0 {
			r.verdict = verdict(wr <= 1.05)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// paired runs the commands one after another, rotating their order every
// round, and returns each one's samples.
func paired(runs int, env []string, cmds ...[]string) ([]sample, error) {
	out := make([]sample, len(cmds))
	for i := range runs {
		for j := range cmds {
			k := (i + j) % len(cmds)
			c := exec.Command(cmds[k][0], cmds[k][1:]...)
			c.Env = env
			t0 := time.Now()
			if b, err := c.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s: %v %s", strings.Join(cmds[k], " "), err, b)
			}
			wall := time.Since(t0)
			ru := c.ProcessState.SysUsage().(*syscall.Rusage)
			out[k].wall = append(out[k].wall, float64(wall))
			out[k].cpu = append(out[k].cpu, float64(ru.Utime.Nano()+ru.Stime.Nano()))
			out[k].rss = append(out[k].rss, float64(ru.Maxrss))
		}
	}
	return out, nil
}

func dur(ns float64) time.Duration { return time.Duration(ns).Round(10 * time.Microsecond) }

// healthServer serves grpc-go's health service on 127.0.0.1.
func healthServer(creds credentials.TransportCredentials) (addr string, stop func(), err error) {
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(gs, grpchealth.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go gs.Serve(ln)
	return ln.Addr().String(), gs.Stop, nil
}

// goInstall builds pkg@version from the module proxy, static and stripped,
// into dir.
func goInstall(dir, pkgVersion string) (string, error) {
	cmd := exec.Command("go", "install", "-trimpath", "-ldflags=-s -w", pkgVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", pkgVersion, err, b)
	}
	name, _, _ := strings.Cut(filepath.Base(pkgVersion), "@")
	return filepath.Join(dir, name), nil
}

// buildBaseline builds cmd/probe as it was at probeBaseline, from the
// repository's history.
func buildBaseline(dir string) (string, error) {
	src := filepath.Join(dir, "baseline")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("the baseline probe is built from git history: %w", err)
	}
	archive := exec.Command("git", "archive", probeBaseline, "go.mod", "go.sum", "cmd/probe", "internal")
	archive.Dir = strings.TrimSpace(string(top))
	tar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	tar.Stdin = pipe
	if err := tar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		return "", fmt.Errorf("git archive %s (a clone with history is needed): %w", probeBaseline, err)
	}
	if err := tar.Wait(); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "probe-baseline")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/probe")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the baseline probe: %v\n%s", err, b)
	}
	return bin, nil
}
