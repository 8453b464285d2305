// Package metrics exports a health.Server's drain to Prometheus: its state,
// each drain phase's duration, the requests that still arrived after the
// signal and when the last one did, how connections ended, the requests cut
// in their body, the requests in flight, the long-lived requests (open,
// asked to leave, left, cut), the tracked tasks, how the drain ended, and
// each readiness check's state and duration.
//
// The collector reads health.Server.Stats when scraped: the request path
// pays nothing for it. It is a module of its own, so that client_golang
// reaches only the services that import it. Serve the registry on the admin
// listener (health.Server.AddAdmin), which answers until the process exits,
// so that a scrape during the drain sees state="draining".
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/drainwell/drainwell/pkg/health"
)

// Register registers srv's collector on reg.
func Register(reg prometheus.Registerer, srv *health.Server) error {
	return reg.Register(NewCollector(srv))
}

// NewCollector returns a collector of srv's Stats.
func NewCollector(srv *health.Server) prometheus.Collector {
	return &collector{srv: srv}
}

const ns = "drainwell"

var (
	stateDesc = prometheus.NewDesc(ns+"_state",
		"The server's state: 1 for the state in force (starting, ready, draining, stopped), 0 for the others.", []string{"state"}, nil)
	phaseDesc = prometheus.NewDesc(ns+"_drain_phase_seconds",
		"How long each ended phase of the drain took: delay, connections, requests, background_work, hooks.", []string{"phase"}, nil)
	afterSignalDesc = prometheus.NewDesc(ns+"_requests_after_signal_total",
		"Requests that began after the signal (during the drain delay: routed by endpoints not yet updated).", nil, nil)
	lastRequestDesc = prometheus.NewDesc(ns+"_last_request_after_signal_seconds",
		"When the last request after the signal on a connection opened after it began, in seconds after the signal (0: none): the endpoint lag. Near DRAIN_DELAY means the delay is too short.", nil, nil)
	connsClosedDesc = prometheus.NewDesc(ns+"_connections_closed_total",
		"Connections the drain ended, by how: after a Connection: close response (after_response), once idle (idle), cut at the deadline (deadline).", []string{"how"}, nil)
	hijackedDesc = prometheus.NewDesc(ns+"_connections_hijacked_total",
		"Connections hijacked from net/http (websockets, h2c handlers): the drain waits for their handlers.", nil, nil)
	cutInBodyDesc = prometheus.NewDesc(ns+"_requests_cut_in_body_total",
		"Requests whose body was still arriving IDLE_CLOSE after their listener closed, cut by the drain.", nil, nil)
	inFlightDesc = prometheus.NewDesc(ns+"_requests_in_flight",
		"HTTP handlers running now.", nil, nil)
	longLivedOpenDesc = prometheus.NewDesc(ns+"_long_lived_open",
		"Long-lived requests (Server.LongLived: streams, WebSockets, streaming RPCs) open now.", nil, nil)
	longLivedAskedDesc = prometheus.NewDesc(ns+"_long_lived_asked_total",
		"Long-lived requests the drain asked to leave, one at a time over LEAVE_WINDOW.", nil, nil)
	longLivedLeftDesc = prometheus.NewDesc(ns+"_long_lived_left_total",
		"Long-lived requests that left after the drain asked them to.", nil, nil)
	longLivedCutDesc = prometheus.NewDesc(ns+"_long_lived_cut_total",
		"Long-lived requests still open at the shutdown deadline or a second signal, cut.", nil, nil)
	tasksStartedDesc = prometheus.NewDesc(ns+"_tasks_started_total",
		"Tracked background tasks started (Server.TryGo).", nil, nil)
	tasksRunningDesc = prometheus.NewDesc(ns+"_tasks_running",
		"Tracked background tasks running now.", nil, nil)
	tasksAbandonedDesc = prometheus.NewDesc(ns+"_tasks_abandoned_total",
		"Tracked background tasks abandoned at the shutdown deadline.", nil, nil)
	endDesc = prometheus.NewDesc(ns+"_drain_end",
		"How the drain ended: 1 for clean, deadline or second signal once it has; no series before.", []string{"end"}, nil)
	checkUpDesc = prometheus.NewDesc(ns+"_readiness_check_up",
		"Each readiness check's last result: 1 passed, 0 failed.", []string{"check"}, nil)
	checkDurationDesc = prometheus.NewDesc(ns+"_readiness_check_duration_seconds",
		"How long each readiness check's last run took.", []string{"check"}, nil)
)

var states = []health.State{health.StateStarting, health.StateReady, health.StateDraining, health.StateStopped}

type collector struct{ srv *health.Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stateDesc, phaseDesc, afterSignalDesc, lastRequestDesc, connsClosedDesc, hijackedDesc,
		cutInBodyDesc, inFlightDesc, longLivedOpenDesc, longLivedAskedDesc, longLivedLeftDesc, longLivedCutDesc, tasksStartedDesc, tasksRunningDesc, tasksAbandonedDesc, endDesc, checkUpDesc, checkDurationDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	for _, s := range states {
		v := 0.0
		if s == st.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, s.String())
	}
	for _, p := range st.Phases {
		ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, p.Duration.Seconds(), string(p.Phase))
	}
	ch <- prometheus.MustNewConstMetric(afterSignalDesc, prometheus.CounterValue, float64(st.RequestsAfterSignal))
	last := 0.0
	if !st.LastRequestAfterSignal.IsZero() {
		last = st.LastRequestAfterSignal.Sub(st.DrainStarted).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(lastRequestDesc, prometheus.GaugeValue, last)
	for how, n := range map[string]int64{"after_response": st.ConnsClosedAfterResponse, "idle": st.ConnsClosedIdle, "deadline": st.ConnsCutAtDeadline} {
		ch <- prometheus.MustNewConstMetric(connsClosedDesc, prometheus.CounterValue, float64(n), how)
	}
	ch <- prometheus.MustNewConstMetric(hijackedDesc, prometheus.CounterValue, float64(st.ConnsHijacked))
	ch <- prometheus.MustNewConstMetric(cutInBodyDesc, prometheus.CounterValue, float64(st.RequestsCutInBody))
	ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(longLivedOpenDesc, prometheus.GaugeValue, float64(st.LongLivedOpen))
	ch <- prometheus.MustNewConstMetric(longLivedAskedDesc, prometheus.CounterValue, float64(st.LongLivedAsked))
	ch <- prometheus.MustNewConstMetric(longLivedLeftDesc, prometheus.CounterValue, float64(st.LongLivedLeft))
	ch <- prometheus.MustNewConstMetric(longLivedCutDesc, prometheus.CounterValue, float64(st.LongLivedCut))
	ch <- prometheus.MustNewConstMetric(tasksStartedDesc, prometheus.CounterValue, float64(st.TasksStarted))
	ch <- prometheus.MustNewConstMetric(tasksRunningDesc, prometheus.GaugeValue, float64(st.TasksRunning))
	ch <- prometheus.MustNewConstMetric(tasksAbandonedDesc, prometheus.CounterValue, float64(st.TasksAbandoned))
	if st.End != "" {
		ch <- prometheus.MustNewConstMetric(endDesc, prometheus.GaugeValue, 1, string(st.End))
	}
	for _, chk := range st.Checks {
		if chk.At.IsZero() {
			continue
		}
		up := 0.0
		if chk.OK {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(checkUpDesc, prometheus.GaugeValue, up, chk.Name)
		ch <- prometheus.MustNewConstMetric(checkDurationDesc, prometheus.GaugeValue, chk.Duration.Seconds(), chk.Name)
	}
}
