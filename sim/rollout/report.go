package rollout

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/drainwell/drainwell/sim/cluster"
)

// Table writes the rows as a markdown table.
func Table(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| profile | rate/s | sent | 2xx | errors | counter | lost | p50 | p99 | rollout | restarts | verdict |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range rows {
		rollout := "-"
		if r.Rollout > 0 {
			rollout = r.Rollout.Round(100 * time.Millisecond).String()
		}
		verdict := r.Verdict()
		switch r.Expect {
		case Loss:
			verdict += " (control: must lose)"
		case NeverRestarted:
			verdict += " (control: never restarted)"
		case FrozenOnly:
			verdict += " (only the frozen pod's)"
		case SlowRestart:
			verdict += " (control: restarted late)"
		case SometimesLoss:
			verdict += " (race control: must lose in some runs)"
		case Killed:
			verdict += " (control: a pod hangs to SIGKILL)"
		case LateWarned:
			verdict += " (control: DRAIN_DELAY too short, must warn)"
		case Spike:
			verdict += " (control: reconnections in one burst)"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %s | %s | %s | %d | %s |\n",
			r.Profile, r.Rate, r.Sent, r.OK, r.Errors, r.Counter, r.Lost,
			r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), rollout, r.Restarts, verdict)
	}
	watchTable(w, rows)
	for _, r := range rows {
		frozen := r.Expect == FrozenOnly || r.Expect == NeverRestarted || r.Expect == SlowRestart
		if len(r.Late) > 0 {
			var pods []string
			for _, l := range r.Late {
				if l.LastRequest <= 0 {
					pods = append(pods, l.Pod+" none")
					continue
				}
				pods = append(pods, fmt.Sprintf("%s %s (margin %s)", l.Pod, l.LastRequest.Round(time.Millisecond), l.Margin.Round(time.Millisecond)))
			}
			line := fmt.Sprintf("- %s: last request after SIGTERM, per pod: %s", r.Profile, strings.Join(pods, ", "))
			if r.LateWarnings > 0 {
				line += fmt.Sprintf("; %d pods warned that DRAIN_DELAY was too short", r.LateWarnings)
			}
			fmt.Fprintln(w, line)
		}
		if len(r.ErrorKinds) == 0 && r.Refused == 0 && !frozen && r.RedisFaults == 0 && r.Kills == 0 {
			continue
		}
		var kinds []string
		for k, n := range r.ErrorKinds {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(kinds)
		line := fmt.Sprintf("- %s: errors: %s", r.Profile, strings.Join(kinds, ", "))
		if r.Refused > 0 {
			line += fmt.Sprintf("; the Service refused %d connections (no endpoint, or a closed listener)", r.Refused)
		}
		if r.Kills > 0 {
			line += fmt.Sprintf("; %d pods were killed at the end of their grace period", r.Kills)
		}
		if frozen {
			line += fmt.Sprintf("; the frozen pod was sent %d connections and answered %d requests within WORK_DELAY before it froze", r.FrozenConns, r.FrozenAtRisk)
			if r.FreezeToRestart > 0 {
				line += fmt.Sprintf("; it ran again %s after the freeze", r.FreezeToRestart.Round(100*time.Millisecond))
			} else {
				line += "; it did not run again within the run"
			}
		}
		if r.RedisFaults > 0 {
			line += fmt.Sprintf("; %d Redis faults injected (replies dropped or delayed, connections reset)", r.RedisFaults)
		}
		fmt.Fprintln(w, line)
	}
}

// watchTable writes what the watchers saw, for the rows that had some.
func watchTable(w io.Writer, rows []Row) {
	header := false
	for _, r := range rows {
		if r.Watch.Watchers == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\n| profile | watchers | values missed | seen twice | behind | reconnects | peak/s | bound/s | longest drain | drains cut at the deadline | verdict |")
			fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
			header = true
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %d | %s | %d | %s |\n",
			r.Profile, r.Watch.Watchers, r.Watch.Missed, r.Watch.Duplicated, r.Watch.Behind, r.Watch.Reconnects,
			r.Watch.PeakPerSecond, r.ReconnectBound, r.DrainLongest.Round(100*time.Millisecond), r.DeadlineEnds, r.Verdict())
	}
	if header {
		fmt.Fprintln(w)
	}
	for _, r := range rows {
		if r.Watch.Failures > 0 {
			fmt.Fprintf(w, "- %s: %d of the watchers' attempts failed before their first event (each retried)\n", r.Profile, r.Watch.Failures)
		}
		if len(r.DeadlinePhases) > 0 {
			fmt.Fprintf(w, "- %s: drains the deadline ended, by what they waited for: %s\n", r.Profile, strings.Join(r.DeadlinePhases, "; "))
		}
	}
}

var phaseColor = map[cluster.Phase]string{
	cluster.Starting:    "#c9d6e8",
	cluster.Ready:       "#4caf50",
	cluster.NotReady:    "#ffb74d",
	cluster.Terminating: "#7e57c2",
	cluster.Frozen:      "#90a4ae",
	cluster.Restarting:  "#e53935",
}

// Report writes a self-contained HTML page: for each run, a timeline of
// each pod's phases and the requests per second, errors in red.
func Report(w io.Writer, results []*Result) {
	fmt.Fprint(w, `<!doctype html><html><head><meta charset="utf-8"><title>rollout</title>
<style>body{font:14px sans-serif;margin:2em}svg{background:#fff;border:1px solid #ddd}text{font:11px sans-serif}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>
<h1>Rolling updates under load</h1><p>Each pod's phases over time (starting, <span style="color:#4caf50">ready</span>,
<span style="color:#ffb74d">not ready</span>, <span style="color:#7e57c2">terminating (draining)</span>,
<span style="color:#90a4ae">frozen</span>, <span style="color:#e53935">restarted</span>; a black tick: a draining pod's last
request after SIGTERM, the endpoint lag it saw), then requests per second:
answered 2xx in blue, failed in red, each in the second it was sent.</p>`)
	for _, r := range results {
		fmt.Fprintf(w, "<h2>%s</h2>\n", html.EscapeString(r.Row.Profile))
		fmt.Fprintf(w, "<p>%d sent, %d 2xx, %d errors, counter %d, lost %d: <b>%s</b></p>\n",
			r.Row.Sent, r.Row.OK, r.Row.Errors, r.Row.Counter, r.Row.Lost, r.Row.Verdict())
		timeline(w, r)
	}
	fmt.Fprintln(w, "</body></html>")
}

func timeline(w io.Writer, r *Result) {
	byPod := map[string][]cluster.Event{}
	var order []string
	end := r.Start
	for _, e := range r.Events {
		if _, ok := byPod[e.Pod]; !ok {
			order = append(order, e.Pod)
		}
		byPod[e.Pod] = append(byPod[e.Pod], e)
		if e.At.After(end) {
			end = e.At
		}
	}
	offset := r.Load.Sub(r.Start).Seconds()
	secs := max(end.Sub(r.Start).Seconds(), offset+float64(len(r.Seconds)))
	const left, width, rowH, chartH = 110, 900, 18, 120
	x := func(t time.Time) float64 { return left + t.Sub(r.Start).Seconds()/secs*width }
	height := len(order)*rowH + chartH + 50
	fmt.Fprintf(w, `<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`+"\n", left+width+20, height)
	for i, pod := range order {
		y := 10 + i*rowH
		fmt.Fprintf(w, `<text x="4" y="%d">%s</text>`+"\n", y+12, html.EscapeString(pod))
		evs := byPod[pod]
		for j, e := range evs {
			if e.Phase == cluster.Exited {
				continue
			}
			stop := end
			if j+1 < len(evs) {
				stop = evs[j+1].At
			}
			fmt.Fprintf(w, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s %s</title></rect>`+"\n",
				x(e.At), y, max(x(stop)-x(e.At), 0.5), rowH-4, phaseColor[e.Phase], html.EscapeString(pod), e.Phase, html.EscapeString(e.Note))
		}
	}
	// Each drained pod's last request after SIGTERM: a black tick on its
	// row, that long after it began terminating.
	for i, pod := range order {
		var term time.Time
		for _, e := range byPod[pod] {
			if e.Phase == cluster.Terminating {
				term = e.At
			}
		}
		for _, l := range r.Row.Late {
			if l.Pod != pod || term.IsZero() || l.LastRequest <= 0 {
				continue
			}
			y := 10 + i*rowH
			fmt.Fprintf(w, `<rect x="%.1f" y="%d" width="2" height="%d" fill="#000"><title>%s: last request %s after SIGTERM, DRAIN_DELAY margin %s</title></rect>`+"\n",
				x(term.Add(l.LastRequest)), y-2, rowH, html.EscapeString(pod), l.LastRequest.Round(time.Millisecond), l.Margin.Round(time.Millisecond))
		}
	}
	base := 10 + len(order)*rowH + chartH
	peak := 1
	for _, s := range r.Seconds {
		peak = max(peak, s.OK+s.Errors)
	}
	bw := width / secs
	for i, s := range r.Seconds {
		okH := float64(s.OK) / float64(peak) * chartH
		errH := float64(s.Errors) / float64(peak) * chartH
		bx := left + (offset+float64(i))*bw
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#64b5f6"><title>load %ds: %d ok</title></rect>`+"\n", bx, float64(base)-okH, max(bw-1, 0.5), okH, i, s.OK)
		if s.Errors > 0 {
			errH = max(errH, 3)
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#e53935"><title>load %ds: %d errors</title></rect>`+"\n", bx, float64(base)-okH-errH, max(bw-1, 0.5), errH, i, s.Errors)
		}
	}
	fmt.Fprintf(w, `<text x="4" y="%d">req/s (max %d)</text>`+"\n", base-chartH+10, peak)
	for s := 0; s <= int(secs); s += max(1, int(secs)/10) {
		fmt.Fprintf(w, `<text x="%.1f" y="%d">%ds</text>`+"\n", left+float64(s)/secs*width, base+16, s)
	}
	fmt.Fprintln(w, "</svg>")
}

// Diary writes a run's phases, notes and load per second in time order,
// from the load's start: what a failed verdict is read against.
func Diary(w io.Writer, r *Result) {
	evs := append(append([]cluster.Event(nil), r.Events...), r.Notes...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	for _, e := range evs {
		what := string(e.Phase)
		if e.Note != "" {
			what = strings.TrimSpace(what + " " + e.Note)
		}
		fmt.Fprintf(w, "%8s %s: %s\n", e.At.Sub(r.Load).Round(time.Millisecond), e.Pod, what)
	}
	for i, s := range r.Seconds {
		fmt.Fprintf(w, "load %2ds: %d ok, %d failed\n", i, s.OK, s.Errors)
	}
}
