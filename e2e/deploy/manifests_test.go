// Package deploy_test checks the manifests in deploy/ against Kubernetes'
// own API types and against the code and image they deploy.
package deploy_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/drainwell/drainwell/cmd/app/service"
	"github.com/drainwell/drainwell/cmd/drainwell/vet"
	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/e2e/harness/harnesstest"
	"github.com/drainwell/drainwell/e2e/internal/dockerfile"
	"github.com/drainwell/drainwell/e2e/manifest"
	"github.com/drainwell/drainwell/pkg/probe"
)

// appSpec is what the code and the image say the app's Deployment must
// agree with.
func appSpec(t *testing.T) manifest.App {
	t.Helper()
	df, err := dockerfile.Parse("../../Dockerfile.distroless")
	if err != nil {
		t.Fatal(err)
	}
	return manifest.App{
		Container:  "app",
		Entrypoint: df.Final().Entrypoint,
		Live:       "live",
		// pkg/health's and cmd/app/service's routes; TestProbesAreServed
		// asks the running binary.
		Routes: []string{"/ready", "/live", "/incr", "/count"},
		Env:    configVars(t, "REDIS_PASSWORD"),
		// Freeze to kill within a minute, restart included (issue: a
		// wedged pod back within a minute).
		MaxWedge:          50 * time.Second,
		MinLivenessPeriod: 10,
	}
}

// configVars lists the app's environment variables from the envconfig tags
// of its Config, but those named in except.
func configVars(t *testing.T, except ...string) []string {
	t.Helper()
	var out []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct { // healthenv.Settings, the app's own
				walk(f.Type)
				continue
			}
			if k := f.Tag.Get("envconfig"); k != "" && !contains(except, k) {
				out = append(out, k)
			}
		}
	}
	walk(reflect.TypeFor[service.Config]())
	if len(out) == 0 {
		t.Fatal("no envconfig tags on service.Config")
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func load(t *testing.T) *manifest.Set {
	t.Helper()
	set, err := manifest.LoadDir("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestKustomizationDecodesStrictly(t *testing.T) {
	set := load(t)
	if len(set.Deployments) != 2 || len(set.Services) != 2 || len(set.PDBs) != 1 {
		t.Fatalf("got %d Deployments, %d Services, %d PDBs; want 2, 2, 1", len(set.Deployments), len(set.Services), len(set.PDBs))
	}
	t.Run("kubectl kustomize", func(t *testing.T) {
		if _, err := exec.LookPath("kubectl"); err != nil {
			t.Skip("no kubectl")
		}
		out, err := exec.Command("kubectl", "kustomize", "../../deploy").Output()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v", err)
		}
		rendered := &manifest.Set{}
		if err := rendered.Add("kubectl kustomize", out); err != nil {
			t.Fatal(err)
		}
		d := rendered.Deployment("app")
		if d == nil || !strings.HasSuffix(d.Spec.Template.Spec.Containers[0].Image, ":dev") {
			t.Fatalf("rendered app image is not tagged by the kustomization: %v", d)
		}
	})
}

func TestAppDeploymentIsConsistent(t *testing.T) {
	set := load(t)
	d := set.Deployment("app")
	if d == nil {
		t.Fatal("no app Deployment")
	}
	for _, err := range manifest.CheckApp(d, set, appSpec(t)) {
		t.Error(err)
	}
}

// deploy/ as kustomize renders it, and its base alone (what users
// include), pass what the project ships to its users: drainwell vet, with
// no finding at all.
func TestDrainwellVetPasses(t *testing.T) {
	rendered := &vet.Set{}
	if err := rendered.Add("kustomize build deploy", load(t).Rendered); err != nil {
		t.Fatal(err)
	}
	base, err := manifest.LoadDir("../../deploy/base")
	if err != nil {
		t.Fatal(err)
	}
	baseSet := &vet.Set{}
	if err := baseSet.Add("kustomize build deploy/base", base.Rendered); err != nil {
		t.Fatal(err)
	}
	for _, set := range []*vet.Set{rendered, baseSet} {
		if len(set.Workloads) == 0 {
			t.Fatal("nothing rendered")
		}
		for _, f := range vet.Check(set, vet.Options{}) {
			t.Error(f)
		}
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	set := load(t)
	d := set.Deployment("app")
	for _, p := range set.PDBs {
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
			t.Errorf("PDB %s: minAvailable %v would block every voluntary eviction of %d replicas", p.Name, p.Spec.MinAvailable, *d.Spec.Replicas)
		}
		for k, v := range p.Spec.Selector.MatchLabels {
			if d.Spec.Template.Labels[k] != v {
				t.Errorf("PDB %s does not select the app's pods", p.Name)
			}
		}
	}
}

// LIVE_FILE's default is deploy/'s marker, on its emptyDir: a probe
// exec ["/app", "live"] with no environment reads what the server writes.
// It is not in world-writable /tmp, where another user could plant one.
func TestDefaultMarkerIsOnDeploysEmptyDir(t *testing.T) {
	c := manifest.Container(load(t).Deployment("app"), "app")
	if got := manifest.Env(c)["LIVE_FILE"]; got != probe.DefaultFile {
		t.Fatalf("deploy/'s LIVE_FILE %q, the default %q", got, probe.DefaultFile)
	}
	if dir := filepath.Dir(probe.DefaultFile); dir == "/tmp" || strings.HasPrefix(dir, "/tmp/") {
		t.Fatalf("the default marker %s is in /tmp", probe.DefaultFile)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == filepath.Dir(probe.DefaultFile)
	}
	if !mounted {
		t.Fatalf("nothing is mounted at %s", filepath.Dir(probe.DefaultFile))
	}
}

// The manifest's environment is a configuration the app accepts.
func TestManifestEnvIsValidConfig(t *testing.T) {
	d := load(t).Deployment("app")
	for k, v := range manifest.Env(manifest.Container(d, "app")) {
		t.Setenv(k, v)
	}
	if _, err := service.LoadConfig(); err != nil {
		t.Fatal(err)
	}
}

// The negative controls: the articles' manifests are rejected, each with a
// message that says what is wrong.
func TestArticlesManifestsRejected(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"strategy-type-typo.yaml", []string{`spec.strategy.type "RollingUpdates"`}},
		{"max-unavailable-typo.yaml", []string{`unknown field "spec.strategy.rollingUpdate.maxUnavaliable"`}},
		{"containers-wrong-level.yaml", []string{`unknown field "spec.containers"`, `unknown field "spec.terminationGracePeriodSeconds"`}},
		{"prestop-kill.yaml", []string{`preStop exec ["kill" "-1" "1"] needs a program the distroless image lacks`, "error exec-needs-program"}},
		{"liveness-cat.yaml", []string{
			`livenessProbe exec ["cat" "/tmp/live"] is not ["/app" "live"]`,
			`readinessProbe path "/health" is not a route the app serves`,
			`readinessProbe port 80 is not the app's port 8080`,
		}},
		{"no-grace.yaml", []string{
			"error grace-period: Deployment/app container app spec.template.spec.terminationGracePeriodSeconds: SHUTDOWN_TIMEOUT 30s + margin 5s = 35s exceeds terminationGracePeriodSeconds 30s",
			"error drain-delay-short: Deployment/app container app spec.template.spec.containers[0].env[DRAIN_DELAY]: DRAIN_DELAY 0s does not cover a replacement's readiness (periodSeconds 10 x successThreshold 1) + propagation 1s",
			"LIVE_FILE /tmp/live is not on a writable emptyDir",
		}},
		{"lifecycle-conflicts.yaml", []string{
			"error readiness-at-signal",
			"warning prestop-and-drain-delay",
			"error stop-signal",
		}},
		{"wedge-old-values.yaml", []string{
			"livenessProbe.terminationGracePeriodSeconds is not set",
			"a frozen process is killed up to 1m50s after it froze (LIVE_MAX_AGE 30s + periodSeconds 15 x failureThreshold 3 + the pod's terminationGracePeriodSeconds 35s), over 50s",
		}},
	}
	spec := appSpec(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "articles", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			set := &manifest.Set{}
			err = set.Add(tt.file, b)
			var errs []error
			if err != nil {
				errs = []error{err}
			} else {
				errs = manifest.CheckApp(set.Deployments[0], set, spec)
				vset := &vet.Set{}
				if err := vset.Add(tt.file, b); err != nil {
					t.Fatalf("vet refuses what the manifest loader accepts: %v", err)
				}
				for _, f := range vet.Check(vset, vet.Options{}) {
					errs = append(errs, errors.New(f.String()))
				}
			}
			all := errors.Join(errs...)
			if all == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(all.Error(), w) {
					t.Errorf("no error says %q; got:\n%v", w, all)
				}
			}
		})
	}
}

// TestProbesAreServed runs the built app with the manifest's environment
// (addresses and paths moved to this machine) and asks it what the kubelet
// would: every httpGet probe answers 200 and the exec probe exits 0.
func TestProbesAreServed(t *testing.T) {
	d := load(t).Deployment("app")
	c := manifest.Container(d, "app")
	spec := appSpec(t)
	bins, err := harness.Build(t.TempDir(), "github.com/drainwell/drainwell/cmd/app")
	if err != nil {
		t.Fatal(err)
	}
	r := harnesstest.Redis(t)
	live := filepath.Join(t.TempDir(), "live")
	var env []string
	for k, v := range manifest.Env(c) {
		switch k {
		case "ADDR":
			v = "127.0.0.1:0"
		case "REDIS_ADDR":
			v = r.Addr
		case "LIVE_FILE":
			v = live
		case "GRPC_ADDR", "ADMIN_ADDR":
			// The manifest's ports are fixed ones another test may hold.
			v = "127.0.0.1:0"
		}
		env = append(env, k+"="+v)
	}
	p := harnesstest.Start(t, bins["app"], env)
	path, addr := c.ReadinessProbe.HTTPGet.Path, p.Addr
	if c.ReadinessProbe.HTTPGet.Port.StrVal == "admin" {
		addr = p.AdminAddr
	}
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readinessProbe %s: %d, want 200", path, resp.StatusCode)
	}
	argv := c.LivenessProbe.Exec.Command
	if argv[0] != spec.Entrypoint[0] {
		t.Fatalf("liveness command %q does not run the image's binary", argv)
	}
	cmd := exec.CommandContext(context.Background(), bins["app"], argv[1:]...)
	cmd.Env = []string{"LIVE_FILE=" + live, "LIVE_MAX_AGE=" + manifest.Env(c)["LIVE_MAX_AGE"]}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("liveness %q: %v %s", argv, err, out)
	}
}

// docs/kubernetes.md's example of a service on the base builds, renames and
// relabels everything, keeps the drain's settings, and passes vet.
func TestUserOverlay(t *testing.T) {
	set, err := manifest.LoadDir("testdata/user")
	if err != nil {
		t.Fatal(err)
	}
	d := set.Deployment("shop-app")
	if d == nil || set.Service("shop-app") == nil || len(set.PDBs) != 1 {
		t.Fatalf("rendered: %d Deployments, %d Services, %d PDBs; want shop-app each", len(set.Deployments), len(set.Services), len(set.PDBs))
	}
	c := manifest.Container(d, "app")
	if c.Image != "REGISTRY/shop:v1.2.3" || d.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "shop" ||
		set.Service("shop-app").Spec.Selector["app.kubernetes.io/name"] != "shop" {
		t.Fatalf("image %s, selectors %v / %v", c.Image, d.Spec.Selector.MatchLabels, set.Service("shop-app").Spec.Selector)
	}
	if env := manifest.Env(c); env["DRAIN_DELAY"] == "" || env["LIVE_FILE"] == "" {
		t.Fatalf("the base's drain settings lost: %v", env)
	}
	vs := &vet.Set{}
	if err := vs.Add("kustomize build testdata/user", set.Rendered); err != nil {
		t.Fatal(err)
	}
	for _, f := range vet.Check(vs, vet.Options{}) {
		t.Error(f)
	}
}
