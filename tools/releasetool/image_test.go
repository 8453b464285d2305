package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The probes' images, built without Docker: a multi-arch OCI index
// (linux/amd64 and linux/arm64) of scratch images, each run as 65532 with
// the binary alone as its one layer. Read back from the OCI layout: the
// platforms, the user, the entrypoint, one layer holding one file; the
// host's binary run out of its layer answers `version`. Built twice from
// two builds of the binary, the index has the same digest.
func TestProbeImages(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the probes")
	}
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	// The host's architecture is built; the other's binary is a stand-in
	// (cross-compiling the standard library would cost make test half a
	// minute): the image's construction is what is tested here, and make
	// release-check builds both for real.
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skipf("GOARCH %s: the images are for amd64 and arm64", runtime.GOARCH)
	}
	standIn := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(standIn, []byte("the "+other+" probe"), 0o755); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for round := range 2 {
		bin := filepath.Join(t.TempDir(), "probe")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, Root+"/cmd/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build probe: %v\n%s", err, out)
		}
		binaries := map[string]string{runtime.GOARCH: bin, other: standIn}
		idx, err := Image("probe", binaries, created)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := WriteLayout(dir, "probe:"+version, idx); err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		if round == 0 {
			checkLayout(t, dir)
		}
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds, two digests: %s and %s", digests[0], digests[1])
	}
	t.Logf("probe image index %s (twice)", digests[0])
}

// checkLayout reads the OCI layout at dir back as a user's tools would.
func checkLayout(t *testing.T, dir string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil || len(topManifest.Manifests) != 1 {
		t.Fatalf("layout index: %v, %v", topManifest, err)
	}
	idx, err := top.ImageIndex(topManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, desc := range m.Manifests {
		platforms = append(platforms, desc.Platform.OS+"/"+desc.Platform.Architecture)
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/probe"}) ||
			cfg.OS+"/"+cfg.Architecture != desc.Platform.OS+"/"+desc.Platform.Architecture {
			t.Errorf("%s: user %q, entrypoint %q, platform %s/%s", desc.Platform.Architecture, cfg.Config.User, cfg.Config.Entrypoint, cfg.OS, cfg.Architecture)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers (%v), want 1", desc.Platform.Architecture, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var names []string
		var bin []byte
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, hdr.Name)
			if hdr.Typeflag != tar.TypeReg || hdr.Mode&0o111 == 0 {
				t.Errorf("%s: %s is not an executable file", desc.Platform.Architecture, hdr.Name)
			}
			bin, _ = io.ReadAll(tr)
		}
		rc.Close()
		if !slices.Equal(names, []string{"probe"}) {
			t.Fatalf("%s: the layer holds %v, want the probe alone", desc.Platform.Architecture, names)
		}
		if desc.Platform.Architecture == runtime.GOARCH {
			path := filepath.Join(t.TempDir(), "probe")
			if err := os.WriteFile(path, bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(path, "version").CombinedOutput(); err != nil {
				t.Fatalf("the probe out of the layer: %v %s", err, out)
			}
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v, want linux/amd64 and linux/arm64", platforms)
	}
}
