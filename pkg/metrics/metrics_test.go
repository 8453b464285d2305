package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/metrics"
)

// scrape GETs url and parses it with Prometheus' own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := get(url)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// get is scrape for the goroutines that must not call t.Fatal.
func get(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

type scraped struct {
	mfs map[string]*dto.MetricFamily
	err error
}

// value is the family's series whose labels include want, or -1.
func value(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	for _, m := range mf.GetMetric() {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == want[i] && l.GetValue() == want[i+1])
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// The series on the admin listener, before the signal, during the drain
// (after the main listener closed, while background work runs) and at its
// end.
func TestSeriesThroughADrain(t *testing.T) {
	srv := health.New(health.Config{DrainDelay: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		IdleClose: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, srv); err != nil {
		t.Fatal(err)
	}
	srv.AddCheck("db", func(context.Context) error { return nil })
	mainLn, adminLn := testutil.Listen(t), testutil.Listen(t)
	srv.AddAdmin(&http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}, adminLn)
	release := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, mainLn) }()
	url := "http://" + adminLn.Addr().String() + "/metrics"
	testutil.WaitFor(t, "ready", func() bool { return srv.State() == health.StateReady })
	resp, err := http.Get("http://" + adminLn.Addr().String() + "/ready") // runs the check once
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mfs := scrape(t, url)
	if value(mfs, "drainwell_state", "state", "ready") != 1 || value(mfs, "drainwell_state", "state", "draining") != 0 ||
		value(mfs, "drainwell_readiness_check_up", "check", "db") != 1 {
		t.Fatalf("before: %v", mfs)
	}
	// At the end: a stop hook runs after the background work, before the
	// marker goes and the admin listener closes.
	endOfDrain := make(chan scraped, 1)
	srv.OnStop(func(context.Context) error {
		mfs, err := get(url)
		endOfDrain <- scraped{mfs, err}
		return nil
	})
	srv.TryGo(func(context.Context) { <-release })
	stop()
	testutil.WaitFor(t, "the main listener closed", func() bool { return testutil.Refused(mainLn.Addr().String()) })
	mfs = scrape(t, url)
	if value(mfs, "drainwell_state", "state", "draining") != 1 || value(mfs, "drainwell_tasks_running") != 1 ||
		value(mfs, "drainwell_drain_phase_seconds", "phase", "delay") < 0.2 || mfs["drainwell_drain_end"] != nil {
		t.Fatalf("during: %v", mfs)
	}
	close(release)
	if err := testutil.Receive(t, "Serve to return", done); err != nil {
		t.Fatal(err)
	}
	end := <-endOfDrain // sent before Serve returned
	if end.err != nil {
		t.Fatalf("scrape in the stop hook: %v", end.err)
	}
	last := end.mfs
	if value(last, "drainwell_tasks_started_total") != 1 || value(last, "drainwell_tasks_running") != 0 ||
		value(last, "drainwell_drain_phase_seconds", "phase", "background_work") < 0 ||
		value(last, "drainwell_state", "state", "draining") != 1 {
		t.Fatalf("at the end: %v", last)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("the admin listener still answers after Serve returned")
	}
}

// The long-lived requests' series: before the signal, open with nothing
// asked; at the end of a drain the deadline cut, two asked that left and
// one that stayed (cut). Scraped from a listener of the test's own, as the
// admin listener closes with the drain.
func TestLongLivedSeries(t *testing.T) {
	srv := health.New(health.Config{DrainDelay: health.NoDrainDelay, ShutdownTimeout: time.Second, IdleClose: 20 * time.Millisecond,
		LeaveWindow: health.NoLeaveWindow, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, srv); err != nil {
		t.Fatal(err)
	}
	ln := testutil.Listen(t)
	hs := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	url := "http://" + ln.Addr().String() + "/metrics"

	for range 2 {
		turn, left := srv.LongLived(context.Background())
		go func() {
			<-turn.Done()
			left()
		}()
	}
	_, staysDone := srv.LongLived(context.Background())
	defer staysDone()
	release := make(chan struct{})
	defer close(release)
	srv.TryGo(func(context.Context) { <-release }) // holds the drain to the deadline

	series := func(mfs map[string]*dto.MetricFamily) [4]float64 {
		return [4]float64{value(mfs, "drainwell_long_lived_open"), value(mfs, "drainwell_long_lived_asked_total"),
			value(mfs, "drainwell_long_lived_left_total"), value(mfs, "drainwell_long_lived_cut_total")}
	}
	mfs := scrape(t, url)
	if got := series(mfs); got != [4]float64{3, 0, 0, 0} {
		t.Fatalf("before the signal: open, asked, left, cut = %v, want [3 0 0 0]", got)
	}
	for name, want := range map[string]dto.MetricType{"drainwell_long_lived_open": dto.MetricType_GAUGE,
		"drainwell_long_lived_asked_total": dto.MetricType_COUNTER, "drainwell_long_lived_left_total": dto.MetricType_COUNTER,
		"drainwell_long_lived_cut_total": dto.MetricType_COUNTER} {
		if got := mfs[name].GetType(); got != want || mfs[name].GetHelp() == "" {
			t.Fatalf("%s: type %s, help %q; want %s with help", name, got, mfs[name].GetHelp(), want)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	stop()
	if err := srv.Serve(ctx, testutil.Listen(t)); !errors.Is(err, health.ErrShutdownTimeout) {
		t.Fatalf("Serve = %v, want the deadline", err)
	}
	if got := series(scrape(t, url)); got != [4]float64{0, 3, 2, 1} {
		t.Fatalf("after the deadline: open, asked, left, cut = %v, want [0 3 2 1]", got)
	}
}
