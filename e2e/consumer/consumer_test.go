// Package consumer_test imports the library as a new user's service module
// does: from outside the repository, with the oldest supported Go and older
// Kubernetes modules pinned, and with the README's embedding example as its
// main.go, which it runs as deploy/ runs the app; and docs/embedding.md's
// every-server example, which it builds.
package consumer_test

import (
	"bytes"
	"errors"
	"github.com/drainwell/drainwell/internal/testutil"
	"go/format"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/mod/modfile"
)

const (
	libPath     = "github.com/drainwell/drainwell"
	grpcPath    = libPath + "/pkg/grpcdrain"
	metricsPath = libPath + "/pkg/metrics"
	// The markers that precede the code blocks compiled here: the
	// README's, and docs/embedding.md's.
	readmeMarker     = "<!-- compiled by e2e/consumer: main.go -->"
	readmeGRPCMarker = "<!-- compiled by e2e/consumer: grpc/main.go -->"
)

// The consumer's own pins: a service on client-go v0.33 has these.
var pins = map[string]string{
	"k8s.io/api":          "v0.33.0",
	"k8s.io/apimachinery": "v0.33.0",
}

// k8sUse keeps the pins in the consumer's module graph, as a service that
// uses client-go's types has them; go mod tidy would drop an unused
// requirement. Its build tag keeps it out of vet and build (go mod tidy
// reads every file but those tagged ignore): compiling k8s.io/api
// proves nothing here, and cost make test half a minute.
const k8sUse = `//go:build pins

package main

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var _ = corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
`

func TestConsumerModule(t *testing.T) {
	root, lib := checkout(t)
	mainGo := readmeBlock(t, filepath.Join(root, "README.md"), readmeMarker)

	tests := []struct {
		name string
		// libGoMod replaces the library's go.mod in a copy of it; empty
		// uses the checkout itself.
		libGoMod    string
		wantChanged bool
	}{
		{name: "the library as it is"},
		{name: "control: the go.mod before the split", libGoMod: "testdata/old-go.mod", wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			libDir := root
			if tt.libGoMod != "" {
				libDir = copyLibrary(t, root, mustRead(t, tt.libGoMod))
			}
			dir := t.TempDir()
			goMod := "module example.com/shop\n\ngo " + lib.Go.Version + "\n\nrequire (\n" +
				"\t" + libPath + " v0.0.0\n" +
				"\tk8s.io/api " + pins["k8s.io/api"] + "\n" +
				"\tk8s.io/apimachinery " + pins["k8s.io/apimachinery"] + "\n)\n\n" +
				"replace " + libPath + " => " + libDir + "\n"
			write(t, filepath.Join(dir, "go.mod"), goMod)
			write(t, filepath.Join(dir, "main.go"), mainGo)
			write(t, filepath.Join(dir, "k8s.go"), k8sUse)

			goCmd(t, dir, "mod", "tidy")
			after, err := modfile.Parse("go.mod", mustRead(t, filepath.Join(dir, "go.mod")), nil)
			if err != nil {
				t.Fatal(err)
			}
			var changes []string
			if after.Go.Version != lib.Go.Version {
				changes = append(changes, "go "+lib.Go.Version+" -> "+after.Go.Version)
			}
			if after.Toolchain != nil {
				changes = append(changes, "toolchain "+after.Toolchain.Name+" added")
			}
			for _, r := range after.Require {
				if want, ok := pins[r.Mod.Path]; ok && r.Mod.Version != want {
					changes = append(changes, r.Mod.Path+" "+want+" -> "+r.Mod.Version)
				}
			}
			switch {
			case tt.wantChanged && len(changes) == 0:
				t.Fatalf("go mod tidy left the consumer's go.mod alone; the control must move it:\n%s", mustRead(t, filepath.Join(dir, "go.mod")))
			case tt.wantChanged:
				t.Logf("control: go mod tidy moved the consumer: %s", strings.Join(changes, "; "))
				return
			case len(changes) > 0:
				t.Fatalf("importing the library moved the consumer's go.mod: %s", strings.Join(changes, "; "))
			}
			// An HTTP-only service without metrics has neither gRPC nor
			// client_golang anywhere in its module graph (pkg/grpcdrain
			// and pkg/metrics are modules of their own).
			graph := goOut(t, dir, "mod", "graph")
			for _, heavy := range []string{"google.golang.org/grpc@", "github.com/prometheus/client_golang@"} {
				if strings.Contains(graph, heavy) {
					t.Fatalf("%s is in an HTTP-only consumer's module graph:\n%s", strings.TrimSuffix(heavy, "@"), graph)
				}
			}
			goCmd(t, dir, "vet", ".")
			bin := filepath.Join(dir, "shop")
			goCmd(t, dir, "build", "-o", bin, ".")
			runShop(t, bin, dir)
		})
	}
}

// TestGRPCConsumerModule compiles docs/embedding.md's every-server example (an
// HTTP API, a gRPC API, a worker and metrics under one drain) as a new
// module that imports the library, pkg/grpcdrain and pkg/metrics from
// outside, with the oldest supported Go: go mod tidy must not move its go
// line. It builds at the workspace's versions (upgradeToWorkspace).
func TestGRPCConsumerModule(t *testing.T) {
	root, lib := checkout(t)
	dir := t.TempDir()
	goMod := "module example.com/orders\n\ngo " + lib.Go.Version + "\n\nrequire (\n" +
		"\t" + libPath + " v0.0.0\n\t" + grpcPath + " v0.0.0\n\t" + metricsPath + " v0.0.0\n)\n\n" +
		"replace (\n\t" + libPath + " => " + root + "\n\t" + grpcPath + " => " + filepath.Join(root, "pkg", "grpcdrain") +
		"\n\t" + metricsPath + " => " + filepath.Join(root, "pkg", "metrics") + "\n)\n"
	write(t, filepath.Join(dir, "go.mod"), goMod)
	write(t, filepath.Join(dir, "main.go"), readmeBlock(t, filepath.Join(root, "docs", "embedding.md"), readmeGRPCMarker))
	goCmd(t, dir, "mod", "tidy")
	after, err := modfile.Parse("go.mod", mustRead(t, filepath.Join(dir, "go.mod")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.Go.Version != lib.Go.Version || after.Toolchain != nil {
		t.Fatalf("importing pkg/grpcdrain moved the consumer's go line or added a toolchain:\n%s", mustRead(t, filepath.Join(dir, "go.mod")))
	}
	upgradeToWorkspace(t, root, dir)
	goCmd(t, dir, "vet", ".")
	goCmd(t, dir, "build", "-o", filepath.Join(dir, "orders"), ".")
}

// upgradeToWorkspace moves the module in dir from the oldest versions go
// mod tidy chose (make proofs tests our modules there) to the versions the
// example app requires, the workspace's, as a service on current releases
// has them. Its build then shares the process tests' compilation of gRPC
// and client_golang.
func upgradeToWorkspace(t *testing.T, root, dir string) {
	t.Helper()
	app, err := modfile.Parse("go.mod", mustRead(t, filepath.Join(root, "cmd", "app", "go.mod")), nil)
	if err != nil {
		t.Fatal(err)
	}
	inGraph := map[string]bool{}
	for _, path := range strings.Fields(goOut(t, dir, "list", "-m", "-f", "{{.Path}}", "all")) {
		inGraph[path] = true
	}
	args := []string{"get"}
	for _, r := range app.Require {
		if inGraph[r.Mod.Path] && !strings.HasPrefix(r.Mod.Path, libPath) {
			args = append(args, r.Mod.Path+"@"+r.Mod.Version)
		}
	}
	goCmd(t, dir, args...)
}

// checkout returns the repository's root and the library's go.mod; it skips
// in -short runs, as the consumer tests download modules.
func checkout(t *testing.T) (string, *modfile.File) {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads modules")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := modfile.Parse("go.mod", mustRead(t, filepath.Join(root, "go.mod")), nil)
	if err != nil {
		t.Fatal(err)
	}
	return root, lib
}

// readmeBlock returns the gofmt-formatted Go code block that follows marker.
func readmeBlock(t *testing.T, path, marker string) string {
	t.Helper()
	s := string(mustRead(t, path))
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("%s has no %q", path, marker)
	}
	s = s[i+len(marker):]
	start := strings.Index(s, "```go\n")
	end := strings.Index(s, "\n```\n")
	if start < 0 || end < start {
		t.Fatalf("no ```go block after %q in %s", marker, path)
	}
	code := s[start+len("```go\n") : end+1]
	if formatted, err := format.Source([]byte(code)); err != nil || string(formatted) != code {
		t.Fatalf("the README's example after %q is not gofmt-formatted (%v):\n%s", marker, err, formatted)
	}
	return code
}

// copyLibrary copies the library's Go packages to a new folder with goMod
// as its go.mod.
func copyLibrary(t *testing.T, root string, goMod []byte) string {
	t.Helper()
	dst := t.TempDir()
	for _, sub := range []string{"pkg", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), mustRead(t, p), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dst, "go.mod"), string(goMod))
	return dst
}

func goCmd(t *testing.T, dir string, args ...string) { t.Helper(); goOut(t, dir, args...) }

// goOut runs go with args in dir and returns its output.
func goOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	// Outside the workspace, with the Go in use: a go line the consumer
	// did not ask for must show up in its go.mod, not in a download. The
	// harness's build flags (static, -trimpath), so that the standard
	// library and the dependencies at the workspace's versions compile
	// once for both.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod -trimpath", "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runShop runs the README's service as deploy/ runs the app: one
// environment for the server and its live command. It starts and serves,
// `shop live` passes, SIGTERM, it exits 0, and `shop live` fails (the
// marker is gone). (The README's main.go before: exited at once on an
// unknown SQL driver, printed its errors twice, and wrote /tmp/live while
// `live` read LIVE_FILE.)
func runShop(t *testing.T, bin, dir string) {
	t.Helper()
	inventory := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer inventory.Close()
	env := []string{"LIVE_FILE=" + filepath.Join(dir, "live"), "LIVE_MAX_AGE=20s", "ADDR=127.0.0.1:0",
		"INVENTORY_URL=" + inventory.URL}
	live := func() (int, string) {
		cmd := exec.Command(bin, "live")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := live(); code != 1 || !strings.Contains(out, "missing") || strings.Count(out, "missing") != 1 {
		t.Fatalf("shop live before the server: exit %d %q, want 1 and one line saying missing", code, out)
	}
	var stderr, stdout testutil.Buffer
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	var addr string
	// The drain logs through the service's logger: JSON on stdout.
	testutil.WaitFor(t, "the serving line", func() bool {
		m := regexp.MustCompile(`"msg":"serving","addr":"([^"]+)"`).FindStringSubmatch(stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/ready: %v %v\n%s", resp, err, stderr.String())
	}
	resp.Body.Close()
	if code, out := live(); code != 0 {
		t.Fatalf("shop live while it serves: exit %d %q", code, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = testutil.Receive(t, "the drain", exited)
	if err != nil {
		t.Fatalf("shop after SIGTERM: %v, want exit 0\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), `"msg":"drain report"`) || stderr.String() != "" {
		t.Fatalf("the drain's log is not the service's (JSON on stdout, nothing on stderr):\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	if code, out := live(); code != 1 || !strings.Contains(out, "missing") {
		t.Fatalf("shop live after the drain: exit %d %q, want 1 (the marker removed)", code, out)
	}
}
