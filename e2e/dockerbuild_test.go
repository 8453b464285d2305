package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drainwell/drainwell/e2e/internal/dockerfile"
)

// Dockerfile.distroless's build stage replayed without Docker: an empty
// folder for its root, exactly what its COPY lines copy (the build
// context as .dockerignore leaves it), then its RUN lines with their
// --mount flags dropped, for linux/amd64. Every output is built. The
// control drops the COPY of pkg/metrics/go.mod, as the Dockerfile was:
// its first RUN fails (cmd/app replaces pkg/metrics with a folder that
// has no go.mod).
func TestDockerfileBuildStageBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the image's binaries")
	}
	tests := []struct {
		name string
		drop string // a COPY whose sources contain this is dropped
	}{
		{"as it is", ""},
		{"control: without pkg/metrics/go.mod", "pkg/metrics/go.mod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := dockerfile.Parse("../Dockerfile.distroless")
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			err = replay(t, f.Stage("build"), "..", root, tt.drop)
			if tt.drop != "" {
				if err == nil {
					t.Fatal("control: the build stage succeeded without " + tt.drop)
				}
				t.Logf("control: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, bin := range []string{"app", "probe", "probe-tls"} {
				if fi, err := os.Stat(filepath.Join(root, "out", bin)); err != nil || fi.Size() == 0 {
					t.Errorf("the build stage did not build /out/%s: %v", bin, err)
				}
			}
		})
	}
}

// replay runs stage's steps in root as the stage's file system, copying
// from the build context ctx; it returns the first RUN's failure.
func replay(t *testing.T, stage *dockerfile.Stage, ctx, root, drop string) error {
	t.Helper()
	ignore := dockerignore(t, filepath.Join(ctx, ".dockerignore"))
	workdir := "/"
	env := append(os.Environ(), "TARGETOS=linux", "TARGETARCH=amd64", "GOFLAGS=")
	for _, s := range stage.Steps {
		switch s.Kind {
		case "workdir":
			workdir = s.Words[0]
			if err := os.MkdirAll(filepath.Join(root, workdir), 0o755); err != nil {
				t.Fatal(err)
			}
		case "env":
			for i := 0; i+1 < len(s.Words); i += 3 {
				env = append(env, s.Words[i]+"="+s.Words[i+1])
			}
		case "copy":
			srcs, dst := s.Words[:len(s.Words)-1], s.Words[len(s.Words)-1]
			if drop != "" && strings.Contains(strings.Join(srcs, " "), drop) {
				continue
			}
			if !filepath.IsAbs(dst) {
				dst = filepath.Join(workdir, dst)
			}
			for _, src := range srcs {
				copyContext(t, ctx, src, filepath.Join(root, dst), ignore)
			}
		case "run":
			script := strings.ReplaceAll(strings.Join(s.Words, " "), "/out/", root+"/out/")
			script = strings.ReplaceAll(script, "/out ", root+"/out ")
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir, cmd.Env = filepath.Join(root, workdir), env
			if out, err := cmd.CombinedOutput(); err != nil {
				return &runError{script, err, string(out)}
			}
		}
	}
	return nil
}

type runError struct {
	script string
	err    error
	out    string
}

func (e *runError) Error() string { return "RUN " + e.script + ": " + e.err.Error() + "\n" + e.out }

// copyContext copies src (a file, or "." for the whole context) from the
// build context into dst, leaving out what ignore matches.
func copyContext(t *testing.T, ctx, src, dst string, ignore func(string) bool) {
	t.Helper()
	if src != "." {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, filepath.Join(ctx, src), filepath.Join(dst, filepath.Base(src)))
		return
	}
	err := filepath.WalkDir(ctx, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(ctx, p)
		if rel == "." {
			return nil
		}
		if ignore(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if d.Type().IsRegular() {
			copyFile(t, p, filepath.Join(dst, rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// dockerignore returns a matcher of .dockerignore's patterns: a path is
// left out when a pattern matches it or one of its parents ("**/" matches
// at any depth). Negations (!) are not used here, and refused.
func dockerignore(t *testing.T, path string) func(string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("%s: negation %q is not supported by the replay", path, line)
		}
		patterns = append(patterns, line)
	}
	return func(rel string) bool {
		parts := strings.Split(filepath.ToSlash(rel), "/")
		for _, p := range patterns {
			anyDepth := strings.HasPrefix(p, "**/")
			p = strings.TrimPrefix(p, "**/")
			for i := range parts {
				if !anyDepth && i > 0 {
					break
				}
				// p against the path from part i on, and its parents
				for j := i + 1; j <= len(parts); j++ {
					if ok, _ := filepath.Match(p, strings.Join(parts[i:j], "/")); ok {
						return true
					}
				}
			}
		}
		return false
	}
}
