package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// version is the release the check rehearses: a coming one, new at each
// run. The go command trusts a module version never to change, and keeps
// an index of its files in the build cache; a v0.1.0 served again with
// other files (vet/pdb.go, since moved) failed to build from that index.
var version = fmt.Sprintf("v0.1.%d", 1000+time.Now().UnixNano()%1_000_000)

// The release as importers get it: the checkout's committed tree, edited by
// Prepare as the release commit is, served from a file-system GOPROXY made
// of golang.org/x/mod/zip's module zips (what the proxy serves for the
// tags), to new modules with the oldest supported go line, no replace and
// no workspace. Every go.mod served requires our modules at the version
// (never a pseudo-version only a replace resolves: Go ignores a
// dependency's replace); each published module is fetched alone at the
// version; the graph holds no other version of ours; the go line does not
// move; every command installs; the README's example builds after go mod
// tidy alone. The control serves the tree as it is: its sub-modules
// require the root at the zero pseudo-version. (Go 1.26 still resolves
// `go get pkg/grpcdrain@v0.1.0` there, by adding the root at v0.1.0 from
// the path-prefix query; a sub-module released without the root at the
// same version would not resolve, so the served go.mod is what is checked.)
func TestReleaseCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads modules")
	}
	tests := []struct {
		name    string
		prepare bool
	}{
		{"the release as Prepare makes it", true},
		{"control: the go.mod files as they are", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := export(t)
			if tt.prepare {
				if err := Prepare(src, version, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			proxy := t.TempDir()
			if err := Proxy(src, version, proxy); err != nil {
				t.Fatal(err)
			}
			stale := staleRequires(t, proxy)
			if !tt.prepare {
				if len(stale) == 0 {
					t.Fatal("control: every served go.mod requires our modules at the version; the tree as it is should not")
				}
				t.Logf("control: %s", strings.Join(stale, "; "))
				return
			}
			if len(stale) > 0 {
				t.Fatalf("served go.mod files require our modules at other versions: %s", strings.Join(stale, "; "))
			}
			env := proxyEnv(t, proxy)
			oldest := goLine(t, filepath.Join(src, "go.mod"))
			for _, d := range Published {
				name := "go get " + ModulePath(d)
				t.Run(name, func(t *testing.T) {
					dir := consumer(t, oldest, "")
					mustGo(t, dir, env, "get", ModulePath(d)+"@"+version)
					checkGraph(t, dir, env, oldest)
				})
			}
			// What importing moves, in a module pinned at older
			// versions of what the library requires (the README says
			// it moves nothing at or above these).
			for _, d := range []string{".", "pkg/grpcdrain", "pkg/metrics"} {
				t.Run("pins kept by "+ModulePath(d), func(t *testing.T) {
					dir := consumer(t, oldest, pinnedMain)
					for path, v := range pins {
						mustGo(t, dir, env, "mod", "edit", "-require="+path+"@"+v)
					}
					mustGo(t, dir, env, "mod", "tidy")
					mustGo(t, dir, env, "get", ModulePath(d)+"@"+version)
					f := parseGoMod(t, filepath.Join(dir, "go.mod"))
					for _, r := range f.Require {
						// client_golang's own requirements (go.yaml.in/yaml/v3
						// v3.0.5) come with pkg/metrics, as with client_golang
						// itself.
						if d == "pkg/metrics" && r.Mod.Path == "go.yaml.in/yaml/v3" {
							continue
						}
						if want, ok := pins[r.Mod.Path]; ok && r.Mod.Version != want {
							t.Errorf("importing %s moved %s %s -> %s", ModulePath(d), r.Mod.Path, want, r.Mod.Version)
						}
					}
				})
			}
			// With the oldest supported Go, the published modules' go line:
			// it builds them all.
			t.Run("go install", func(t *testing.T) {
				bin := t.TempDir()
				for _, cmd := range []string{Root + "/cmd/probe", Root + "/cmd/probe-tls", Root + "/cmd/drainwell"} {
					mustGo(t, t.TempDir(), append(env, "GOBIN="+bin, "GOTOOLCHAIN=go"+oldest), "install", cmd+"@"+version)
					if _, err := os.Stat(filepath.Join(bin, filepath.Base(cmd))); err != nil {
						t.Fatalf("go install %s@%s: %v", cmd, version, err)
					}
				}
			})
			t.Run("the README's example", func(t *testing.T) {
				dir := consumer(t, oldest, readmeMain(t, filepath.Join(src, "README.md")))
				mustGo(t, dir, env, "get", Root+"@"+version)
				mustGo(t, dir, env, "mod", "tidy")
				checkGraph(t, dir, env, oldest)
				// The e2e harness's flags: the standard library compiles once.
				mustGo(t, dir, append(env, "CGO_ENABLED=0"), "build", "-trimpath", "-o", filepath.Join(dir, "shop"), ".")
			})
		})
	}
}

// staleRequires lists the requirements on our modules, in the go.mod files
// the proxy serves, at another version than the release's.
func staleRequires(t *testing.T, proxy string) []string {
	t.Helper()
	var stale []string
	for _, d := range Published {
		esc, err := module.EscapePath(ModulePath(d))
		if err != nil {
			t.Fatal(err)
		}
		f := parseGoMod(t, filepath.Join(proxy, esc, "@v", version+".mod"))
		for _, r := range f.Require {
			if strings.HasPrefix(r.Mod.Path, Root) && r.Mod.Version != version {
				stale = append(stale, ModulePath(d)+" requires "+r.Mod.String())
			}
		}
	}
	return stale
}

// pins are a consumer's older versions of what the library requires:
// importing the library must move none of them.
var pins = map[string]string{
	"github.com/spf13/cobra":               "v1.8.0",
	"github.com/spf13/pflag":               "v1.0.5",
	"github.com/kelseyhightower/envconfig": "v1.4.0",
	"go.yaml.in/yaml/v3":                   "v3.0.3",
	// The gRPC version of the public service whose port importing
	// pkg/grpcdrain moved to v1.85.0 (issue 28).
	"google.golang.org/grpc": "v1.83.0",
}

// pinnedMain keeps the pins in the consumer's build.
const pinnedMain = `package main

import (
	_ "github.com/kelseyhightower/envconfig"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/pflag"
	_ "go.yaml.in/yaml/v3"
	_ "google.golang.org/grpc"
)

func main() {}
`

// export writes the repository's committed tree (git archive HEAD) to a
// new folder: a clone of the checkout, without the working tree's caches.
func export(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	cmd := exec.Command("sh", "-c", `git -C "$1" archive --format=tar HEAD | tar -x -C "$2"`, "sh", "../..", dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, out)
	}
	return dst
}

// proxyEnv is the go command's environment with proxy first, our modules
// kept out of the checksum database (they are not in it), no workspace.
// Our modules leave the module cache before and after: a version served
// by an earlier run would be read from there, not from proxy.
func proxyEnv(t *testing.T, proxy string) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOPROXY", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	upstream, modCache, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	forget := func() {
		for _, dir := range []string{filepath.Join(modCache, Root), filepath.Join(modCache, "cache", "download", Root)} {
			filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					os.Chmod(path, 0o755) // the module cache is read-only
				}
				return nil
			})
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	forget()
	t.Cleanup(forget)
	return append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GONOSUMDB="+Root,
		"GOPROXY=file://"+filepath.ToSlash(proxy)+","+upstream)
}

// consumer makes a new module with go line goLine and, when mainGo is not
// empty, that main.go.
func consumer(t *testing.T, goLine, mainGo string) string {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module example.com/consumer\n\ngo "+goLine+"\n")
	if mainGo != "" {
		write(t, filepath.Join(dir, "main.go"), mainGo)
	}
	return dir
}

// checkGraph checks the consumer's module graph: no version of ours but
// the release's, and its go line and toolchain unmoved.
func checkGraph(t *testing.T, dir string, env []string, goLine string) {
	t.Helper()
	out := mustGo(t, dir, env, "list", "-m", "all")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		path, v, _ := strings.Cut(line, " ")
		if strings.HasPrefix(path, Root) && v != version {
			t.Errorf("the graph holds %s %s, not %s", path, v, version)
		}
	}
	if f := parseGoMod(t, filepath.Join(dir, "go.mod")); f.Go.Version != goLine || f.Toolchain != nil {
		t.Fatalf("the consumer's go line moved (or a toolchain was added): go %s, toolchain %v", f.Go.Version, f.Toolchain)
	}
}

// readmeMain is the README's embedding example.
func readmeMain(t *testing.T, readme string) string {
	t.Helper()
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	const marker = "<!-- compiled by e2e/consumer: main.go -->"
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "```go\n") + len("```go\n")
	return s[start : start+strings.Index(s[start:], "```")]
}

func goLine(t *testing.T, goMod string) string {
	t.Helper()
	return parseGoMod(t, goMod).Go.Version
}

// parseGoMod reads the go.mod file at path.
func parseGoMod(t *testing.T, path string) *modfile.File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func goRun(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGo(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := goRun(dir, env, args...)
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Prepare moves CHANGELOG's Unreleased section under the version, leaves
// a new empty one, and refuses a version the CHANGELOG already has: a
// published version is never moved. A bad version is refused.
func TestPrepare(t *testing.T) {
	src := export(t)
	date := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	if err := Prepare(src, "0.1", date); err == nil {
		t.Fatal("Prepare accepted version 0.1")
	}
	if err := Prepare(src, version, date); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(src, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "## Unreleased\n\n## "+version+" (2026-12-02)\n") {
		t.Fatalf("CHANGELOG.md after Prepare:\n%.600s", data[strings.Index(string(data), "## Unreleased"):])
	}
	if err := Prepare(src, version, date); err == nil || !strings.Contains(err.Error(), "never moved") {
		t.Fatalf("Prepare of the same version again = %v, want a refusal", err)
	}
}
