package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// clean is a run that lost nothing: sent = 2xx = counter, no errors.
func clean(e Expect) Row {
	return Row{Profile: "p", Sent: 100, OK: 100, Counter: 100, Expect: e}
}

// with returns r changed by f.
func with(r Row, f func(*Row)) Row {
	f(&r)
	return r
}

// A run is lossy when a request failed, an increment did not land (or
// landed twice), a request got no 2xx, or a webhook answered an admission
// twice.
func TestLossy(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  Row
		want bool
	}{
		{"sent = 2xx = counter, no errors", clean(NoLoss), false},
		{"a transport error", with(clean(NoLoss), func(r *Row) { r.Errors, r.OK = 1, 99 }), true},
		{"an error while every request got a 2xx", with(clean(NoLoss), func(r *Row) { r.Errors = 1 }), true},
		{"a 2xx whose increment never landed", with(clean(NoLoss), func(r *Row) { r.Lost, r.Counter = 1, 99 }), true},
		{"an increment counted twice", with(clean(NoLoss), func(r *Row) { r.Lost, r.Counter = -1, 101 }), true},
		{"a request without an answer", with(clean(NoLoss), func(r *Row) { r.OK = 99 }), true},
		{"an admission answered twice", with(clean(NoLoss), func(r *Row) { r.AnsweredTwice = 1 }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.row.Lossy(); got != tc.want {
				t.Fatalf("Lossy = %v, want %v (row %+v)", got, tc.want, tc.row)
			}
		})
	}
}

// Each Expect's verdict on a row that shows it and on rows that do not.
// want is a word the verdict must contain.
func TestVerdict(t *testing.T) {
	frozen := func(r *Row) {
		r.Restarts, r.FreezeToRestart = 1, 45*time.Second
		r.FrozenConns, r.FrozenAtRisk = 3, 2
	}
	for _, tc := range []struct {
		name string
		row  Row
		want string
	}{
		// NoLoss: nothing lost and no pod killed. A late-request warning is
		// reported, not judged.
		{"NoLoss: nothing lost", clean(NoLoss), "ok"},
		{"NoLoss: nothing lost, a pod warned late", with(clean(NoLoss), func(r *Row) { r.LateWarnings = 2 }), "ok"},
		{"NoLoss: an error", with(clean(NoLoss), func(r *Row) { r.Errors, r.OK = 1, 99 }), "FAIL"},
		{"NoLoss: an increment lost", with(clean(NoLoss), func(r *Row) { r.Lost, r.Counter = 1, 99 }), "FAIL"},
		{"NoLoss: an increment counted twice", with(clean(NoLoss), func(r *Row) { r.Lost, r.Counter = -1, 101 }), "FAIL"},
		{"NoLoss: a pod killed", with(clean(NoLoss), func(r *Row) { r.Kills = 1 }), "FAIL"},

		// Loss: a negative control must lose.
		{"Loss: lost", with(clean(Loss), func(r *Row) { r.Errors, r.OK = 5, 95 }), "ok"},
		{"Loss: counted twice", with(clean(Loss), func(r *Row) { r.Lost, r.Counter = -1, 101 }), "ok"},
		{"Loss: nothing lost", clean(Loss), "FAIL"},

		// LateWarned: a pod warned that DRAIN_DELAY was too short; losses
		// are allowed.
		{"LateWarned: warned", with(clean(LateWarned), func(r *Row) { r.LateWarnings = 1 }), "ok"},
		{"LateWarned: warned and lost", with(clean(LateWarned), func(r *Row) { r.LateWarnings, r.Errors, r.OK = 1, 3, 97 }), "ok"},
		{"LateWarned: no warning", clean(LateWarned), "FAIL"},
		{"LateWarned: lost but no warning", with(clean(LateWarned), func(r *Row) { r.Errors, r.OK = 3, 97 }), "FAIL"},

		// Killed: a pod hung in its drain until SIGKILL.
		{"Killed: a pod killed", with(clean(Killed), func(r *Row) { r.Kills = 1 }), "ok"},
		{"Killed: no pod killed", clean(Killed), "FAIL"},

		// FrozenOnly: the frozen pod restarted in time, and nothing lost but
		// what it held.
		{"FrozenOnly: restarted in time, losses within the frozen pod's", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.Errors, r.OK, r.Lost, r.Counter = 3, 97, 2, 95
		}), "ok"},
		{"FrozenOnly: restarted at the bound", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.FreezeToRestart = MaxFreezeToRestart
		}), "ok"},
		{"FrozenOnly: never restarted", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.Restarts, r.FreezeToRestart = 0, 0
		}), "FAIL"},
		{"FrozenOnly: no restart counted", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.Restarts = 0
		}), "FAIL"},
		{"FrozenOnly: a restart, but the frozen pod's not seen", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.FreezeToRestart = 0
		}), "FAIL"},
		{"FrozenOnly: restarted late", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.FreezeToRestart = MaxFreezeToRestart + time.Millisecond
		}), "FAIL"},
		{"FrozenOnly: more errors than connections to the frozen pod", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.Errors, r.OK = 4, 96
		}), "FAIL"},
		{"FrozenOnly: more increments lost than the frozen pod held", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.Lost, r.Counter = 3, 97
		}), "FAIL"},
		{"FrozenOnly: an increment counted twice", with(clean(FrozenOnly), func(r *Row) {
			frozen(r)
			r.Lost, r.Counter = -1, 101
		}), "FAIL"},

		// NeverRestarted: the frozen pod was never restarted.
		{"NeverRestarted: no restart", clean(NeverRestarted), "ok"},
		{"NeverRestarted: restarted", with(clean(NeverRestarted), func(r *Row) { r.Restarts = 1 }), "FAIL"},

		// SlowRestart: restarted later than MaxFreezeToRestart, or not
		// within the run.
		{"SlowRestart: restarted late", with(clean(SlowRestart), func(r *Row) {
			r.Restarts, r.FreezeToRestart = 1, MaxFreezeToRestart+time.Second
		}), "ok"},
		{"SlowRestart: not restarted within the run", clean(SlowRestart), "ok"},
		{"SlowRestart: restarted at the bound", with(clean(SlowRestart), func(r *Row) {
			r.Restarts, r.FreezeToRestart = 1, MaxFreezeToRestart
		}), "FAIL"},
		{"SlowRestart: restarted in time", with(clean(SlowRestart), func(r *Row) {
			r.Restarts, r.FreezeToRestart = 1, 45*time.Second
		}), "FAIL"},

		// SometimesLoss: a row says whether it lost; Judge decides.
		{"SometimesLoss: lost", with(clean(SometimesLoss), func(r *Row) { r.Errors, r.OK = 1, 99 }), "lost"},
		{"SometimesLoss: nothing lost", clean(SometimesLoss), "none"},

		// Compare: no verdict, whatever happened.
		{"Compare: nothing lost", clean(Compare), "-"},
		{"Compare: lost", with(clean(Compare), func(r *Row) { r.Errors, r.OK = 1, 99 }), "-"},

		// An Expect the switch does not know fails.
		{"an unknown Expect", clean(Compare + 1), "FAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.row.Verdict()
			if !strings.Contains(got, tc.want) {
				t.Fatalf("Verdict = %q, want %q (row %+v)", got, tc.want, tc.row)
			}
			// A passing verdict never also says FAIL, and the reverse.
			if tc.want == "ok" && got != "ok" || tc.want == "FAIL" && got != "FAIL" {
				t.Fatalf("Verdict = %q, want exactly %q", got, tc.want)
			}
		})
	}
}

// Judge lists the profiles whose rows say FAIL, and each SometimesLoss
// profile none of whose runs lost. Compare rows and rows that pass are not
// listed.
func TestJudge(t *testing.T) {
	named := func(name string, r Row) Row { r.Profile = name; return r }
	lossy := func(r *Row) { r.Errors, r.OK = 1, 99 }
	for _, tc := range []struct {
		name string
		rows []Row
		want []string // each a word of one failure, in any order
	}{
		{"no rows", nil, nil},
		{"every verdict ok", []Row{
			named("a", clean(NoLoss)),
			named("b", with(clean(Loss), lossy)),
			named("c", with(clean(Compare), lossy)),
		}, nil},
		{"a FAIL row is listed by its profile", []Row{
			named("a", clean(NoLoss)),
			named("control b", clean(Loss)),
		}, []string{"control b"}},
		{"each FAIL row is listed", []Row{
			named("a", with(clean(NoLoss), lossy)),
			named("a", with(clean(NoLoss), func(r *Row) { r.Kills = 1 })),
		}, []string{"a", "a"}},
		{"a race control that lost in one run of three passes", []Row{
			named("race", clean(SometimesLoss)),
			named("race", with(clean(SometimesLoss), lossy)),
			named("race", clean(SometimesLoss)),
		}, nil},
		{"a race control that never lost fails once", []Row{
			named("race", clean(SometimesLoss)),
			named("race", clean(SometimesLoss)),
		}, []string{"race (no run lost)"}},
		{"race controls judged apart", []Row{
			named("race 1", with(clean(SometimesLoss), lossy)),
			named("race 2", clean(SometimesLoss)),
			named("race 3", clean(SometimesLoss)),
			named("d", clean(Killed)),
		}, []string{"race 2 (no run lost)", "race 3 (no run lost)", "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Judge(tc.rows)
			if len(got) != len(tc.want) {
				t.Fatalf("Judge = %q, want %d failures like %q", got, len(tc.want), tc.want)
			}
			// The race controls' failures come from a map: match each
			// wanted failure to a distinct one, in any order.
			left := slices.Clone(got)
			for _, w := range tc.want {
				i := slices.IndexFunc(left, func(g string) bool { return g == w })
				if i < 0 {
					t.Fatalf("Judge = %q, want %q among them", got, w)
				}
				left = slices.Delete(left, i, i+1)
			}
		})
	}
}
