package e2e

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/e2e/internal/dockerfile"
)

// No Docker engine runs here: the image is proven by parsing its
// Dockerfile with BuildKit's parser, checking the binaries are static, and
// running them in a root filesystem that holds only what the final image
// holds.

func TestDockerfile(t *testing.T) {
	f, err := dockerfile.Parse("../Dockerfile.distroless")
	if err != nil {
		t.Fatal(err)
	}
	build := f.Stage("build")
	if build == nil {
		t.Fatal("no build stage")
	}
	t.Run("pinned builder matches the app module's go line", func(t *testing.T) {
		b, err := os.ReadFile("../cmd/app/go.mod")
		if err != nil {
			t.Fatal(err)
		}
		mf, err := modfile.ParseLax("go.mod", b, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "golang:" + mf.Go.Version + "-"
		if !strings.HasPrefix(build.Base, want) {
			t.Fatalf("builder %q, want %s* (cmd/app/go.mod's go %s)", build.Base, want, mf.Go.Version)
		}
	})
	t.Run("static stripped build with a module cache", func(t *testing.T) {
		runs := strings.Join(build.Runs, "\n")
		for _, want := range []string{"--mount=type=cache,target=/go/pkg/mod", "-trimpath", `-ldflags="-s -w"`, "./cmd/app", "./cmd/probe", "./cmd/probe-tls"} {
			if !strings.Contains(runs, want) {
				t.Errorf("build stage RUN lacks %s", want)
			}
		}
		if !slices.Contains(build.Envs, "CGO_ENABLED=0") {
			t.Errorf("build stage does not set CGO_ENABLED=0: %v", build.Envs)
		}
	})
	t.Run("cross-compiled for TARGETPLATFORM on BUILDPLATFORM", func(t *testing.T) {
		if err := crossBuild(build); err != nil {
			t.Fatal(err)
		}
		// Negative control: the build stage as it was, emulated.
		text, err := os.ReadFile("../Dockerfile.distroless")
		if err != nil {
			t.Fatal(err)
		}
		old := strings.Replace(string(text), "FROM --platform=$BUILDPLATFORM golang", "FROM golang", 1)
		old = strings.Replace(old, "export GOOS=$TARGETOS GOARCH=$TARGETARCH && ", "", 1)
		of, err := dockerfile.ParseBytes("control", []byte(old))
		if err != nil {
			t.Fatal(err)
		}
		if crossBuild(of.Stage("build")) == nil {
			t.Fatal("control: a build stage without --platform passed")
		}
	})
	t.Run("final stage is distroless nonroot", func(t *testing.T) {
		final := f.Final()
		checks := []struct {
			what      string
			got, want any
		}{
			{"base", final.Base, "gcr.io/distroless/static-debian12:nonroot"},
			{"entrypoint (exec form)", final.Entrypoint, []string{"/app"}},
			{"user", final.User, "65532:65532"},
			{"healthcheck", final.Healthcheck, []string{"/app", "live"}},
		}
		for _, c := range checks {
			if !reflectEqual(c.got, c.want) {
				t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
			}
		}
		if !slices.ContainsFunc(final.Copies, func(c string) bool { return strings.HasPrefix(c, "--from=build") && strings.HasSuffix(c, " /app") }) {
			t.Errorf("final stage does not copy /app from the build stage: %v", final.Copies)
		}
	})
	t.Run("probe stages for COPY --from", func(t *testing.T) {
		for _, name := range []string{"probe", "probe-tls"} {
			p := f.Stage(name)
			if p == nil || !slices.ContainsFunc(p.Copies, func(c string) bool { return strings.HasSuffix(c, " /"+name) }) {
				t.Errorf("no stage named %s holding /%s: %+v", name, name, p)
			}
		}
	})
	t.Run("dockerignore", func(t *testing.T) {
		b, err := os.ReadFile("../.dockerignore")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{".git", "bin"} {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(b) {
				t.Errorf(".dockerignore does not exclude %s", want)
			}
		}
	})
}

// crossBuild reports why a build stage would not cross-compile: it must run
// on $BUILDPLATFORM, declare TARGETOS and TARGETARCH, and build with them.
func crossBuild(s *dockerfile.Stage) error {
	switch runs := strings.Join(s.Runs, "\n"); {
	case s.Platform != "$BUILDPLATFORM":
		return fmt.Errorf("build stage FROM --platform=%q, want $BUILDPLATFORM (else it runs emulated)", s.Platform)
	case !slices.Contains(s.Args, "TARGETOS") || !slices.Contains(s.Args, "TARGETARCH"):
		return fmt.Errorf("build stage declares ARG %v, want TARGETOS and TARGETARCH", s.Args)
	case !strings.Contains(runs, "GOOS=$TARGETOS") || !strings.Contains(runs, "GOARCH=$TARGETARCH"):
		return errors.New("build stage RUN does not set GOOS=$TARGETOS GOARCH=$TARGETARCH")
	}
	return nil
}

func reflectEqual(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

// static reports why an ELF file would not run on distroless/static: an
// interpreter or needed shared libraries.
func static(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("has an ELF interpreter (dynamically linked)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return errors.New("needs shared libraries " + strings.Join(libs, ", "))
	}
	return nil
}

func TestBinariesAreStatic(t *testing.T) {
	for _, name := range []string{"app", "probe", "probe-tls"} {
		if err := static(bins[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Negative control: the same probe built with cgo links libc. It is
	// built with -race, which needs cgo, so that it reuses the packages
	// the tests' own -race compilation built.
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc for the cgo control")
	}
	dyn := filepath.Join(t.TempDir(), "probe-cgo")
	cmd := exec.Command("go", "build", "-race", "-o", dyn, "github.com/drainwell/drainwell/cmd/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cgo build: %v %s", err, out)
	}
	if err := static(dyn); err == nil {
		t.Fatal("the check passed a cgo-linked binary")
	}
}

// rootfs makes a root that holds what distroless/static:nonroot holds for
// our purpose: the binary at /app, /etc/passwd and /etc/group with
// nonroot, a writable /tmp. No shell, no cat, no libc.
func rootfs(t *testing.T, bin string) string {
	t.Helper()
	root := t.TempDir()
	os.Chmod(root, 0o755)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bin)
	must(err)
	must(os.WriteFile(filepath.Join(root, "app"), b, 0o755))
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte(
		"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "home", "nonroot"), 0o700))
	must(os.Chown(filepath.Join(root, "home", "nonroot"), 65532, 65532))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o1777))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	return root
}

func inRoot(root string, env []string, argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: 65532, Gid: 65532},
	}
	return cmd
}

func TestDistrolessRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root; chroot needs it")
		}
		t.Skip("chroot needs root")
	}
	root := rootfs(t, bins["app"])
	env := []string{"ADDR=127.0.0.1:0", "LIVE_FILE=/tmp/live", "DRAIN_DELAY=100ms", "IDLE_CLOSE=100ms", "WORK_DELAY=0s"}
	live := func() (int, string) {
		out, err := inRoot(root, env, "/app", "live").CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if ee != nil {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	if code, out := live(); code != 1 || !strings.Contains(out, "missing") {
		t.Fatalf("live before serve: exit %d %q, want 1 missing", code, out)
	}
	p, err := harness.StartCmd(inRoot(root, env, "/app", "serve"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	resp, err := http.Get("http://" + p.Addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/ready = %d", resp.StatusCode)
	}
	fi, err := os.Stat(filepath.Join(root, "tmp", "live"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || fi.Mode().Perm() != 0o644 {
		t.Fatalf("marker owned by %d with mode %v, want 65532 and 0644", st.Uid, fi.Mode().Perm())
	}
	if code, out := live(); code != 0 {
		t.Fatalf("live while serving: exit %d %q", code, out)
	}
	for _, fallback := range []string{"/bin/sh", "/bin/cat"} {
		if err := inRoot(root, nil, fallback, "/tmp/live").Run(); err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s in the root: %v, want not found", fallback, err)
		}
	}
	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v after SIGTERM\n%s", code, err, p.Stderr())
	}
	if code, out := live(); code != 1 || !strings.Contains(out, "missing") {
		t.Fatalf("live after the drain: exit %d %q, want 1 missing", code, out)
	}
}
