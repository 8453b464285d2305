package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/drainwell/drainwell/internal/testutil"
)

// scrapeMetrics GETs url and parses it with Prometheus' own text parser; nil
// when the listener is gone.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s does not parse as Prometheus text: %v", url, err)
	}
	return mfs
}

// metricValue is the value of the series of family name whose labels
// include the label pairs, or -1.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	for _, m := range mfs[name].GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			match = match && found
		}
		if !match {
			continue
		}
		if m.Gauge != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// The app's /metrics on its admin listener, scraped before, during (after
// the main listener closed, while background work runs) and at the end of
// a drain; the drain report line at exit says the same.
func TestMetricsThroughADrain(t *testing.T) {
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "LIVE_FILE="+filepath.Join(t.TempDir(), "live"),
		"DRAIN_DELAY=500ms", "WORK_DELAY=1500ms", "SHUTDOWN_TIMEOUT=5s", "IDLE_CLOSE=100ms")
	url := "http://" + p.AdminAddr + "/metrics"
	mfs := scrapeMetrics(t, url)
	if metricValue(mfs, "drainwell_state", "state", "ready") != 1 || metricValue(mfs, "drainwell_state", "state", "draining") != 0 ||
		metricValue(mfs, "drainwell_tasks_started_total") != 0 || mfs["go_goroutines"] == nil {
		t.Fatalf("before the signal: %v", mfs)
	}
	for range 3 {
		resp, err := http.Post("http://"+p.Addr+"/incr", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	p.Signal(syscall.SIGTERM)
	waitDraining(t, "http://"+p.AdminAddr)
	resp, err := http.Post("http://"+p.Addr+"/incr", "", nil) // routed by a stale endpoint
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testutil.WaitFor(t, "main listener closed", func() bool { return testutil.Refused(p.Addr) })
	mfs = scrapeMetrics(t, url)
	if metricValue(mfs, "drainwell_state", "state", "draining") != 1 || metricValue(mfs, "drainwell_tasks_running") < 1 ||
		metricValue(mfs, "drainwell_requests_after_signal_total") < 1 || metricValue(mfs, "drainwell_last_request_after_signal_seconds") <= 0 ||
		metricValue(mfs, "drainwell_drain_phase_seconds", "phase", "delay") < 0.5 || mfs["drainwell_drain_end"] != nil {
		t.Fatalf("during the drain: %v", mfs)
	}
	var last map[string]*dto.MetricFamily // the last scrape before the admin listener closed
	testutil.WaitFor(t, "the admin listener to close at exit", func() bool {
		m := scrapeMetrics(t, url)
		if m == nil {
			return true
		}
		last = m
		return false
	})
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit %d %v", code, err)
	}
	if metricValue(last, "drainwell_tasks_started_total") != 4 || metricValue(last, "drainwell_state", "state", "draining") != 1 {
		t.Fatalf("the last scrape: %v", last)
	}
	var report string
	for _, line := range strings.Split(p.Stderr(), "\n") {
		if strings.Contains(line, `msg="drain report"`) {
			report = line
		}
	}
	fields := map[string]string{}
	for _, kv := range strings.Fields(report) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			fields[k] = v
		}
	}
	for k, want := range map[string]string{"end": "clean", "tasks_started": "4", "tasks_abandoned": "0", "requests_after_signal": "1"} {
		if fields[k] != want {
			t.Errorf("drain report: %s=%q, want %q: %q", k, fields[k], want, report)
		}
	}
	// The delay is 500ms; the last task started after the signal and ran
	// 1500ms, so the phases add up to 1500ms at least and the background
	// work phase is not empty (how close to those bounds: BENCHMARKS.md).
	var sum time.Duration
	for _, k := range []string{"phase_delay", "phase_connections", "phase_requests", "phase_background_work", "phase_hooks"} {
		d, err := time.ParseDuration(fields[k])
		if err != nil {
			t.Fatalf("drain report: %s=%q: %v: %q", k, fields[k], err, report)
		}
		switch {
		case k == "phase_delay" && d < 500*time.Millisecond:
			t.Errorf("drain report: %s=%s, shorter than DRAIN_DELAY: %q", k, d, report)
		case k == "phase_background_work" && d <= 0:
			t.Errorf("drain report: %s=%s, want the task's remaining time: %q", k, d, report)
		}
		sum += d
	}
	if sum < 1500*time.Millisecond {
		t.Errorf("drain report: the phases add up to %s, less than the task's 1500ms: %q", sum, report)
	}
}
