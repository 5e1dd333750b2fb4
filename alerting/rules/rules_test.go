package rules_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alerting/rules"
)

// run feeds a sequence of outcomes to a rule, starting inactive, and
// returns the transitions as "batch:fired" / "batch:resolved" (batches
// numbered from 1).
func run(t *testing.T, r rules.Rule, outcomes []rules.Outcome) []string {
	t.Helper()
	r, err := r.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	active := false
	for i, o := range outcomes {
		var tr rules.Transition
		active, tr = r.Step(active, o)
		if tr != rules.None {
			got = append(got, fmt.Sprintf("%d:%s", i+1, tr))
		}
	}
	return got
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("transitions %q, want %q", got, want)
	}
}

// misses turns a point pattern ("P" point, "-" miss) into outcomes, counting
// misses from the first batch.
func misses(pattern string) []rules.Outcome {
	var out []rules.Outcome
	m := 0
	for _, c := range pattern {
		m = rules.NextMisses(m, c == 'P')
		out = append(out, rules.Outcome{Producer: "B62a", Misses: m})
	}
	return out
}

func TestMissedBatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		count   int
		pattern string
		want    []string
	}{
		{"fires on the third miss, resolves on the next point, fires again", 3, "P----PP---P", []string{"4:fired", "6:resolved", "10:fired", "11:resolved"}},
		{"two misses are not three", 3, "P--P--P--", nil},
		{"the first batch counts, a point there or not", 3, "---", []string{"3:fired"}},
		{"no repeat while still missing", 3, "P---------", []string{"4:fired"}},
		{"default count is 3", 0, "P---", []string{"4:fired"}},
		{"count 1 fires on every first miss", 1, "P-P--P", []string{"2:fired", "3:resolved", "4:fired", "6:resolved"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			equal(t, run(t, rules.Rule{Kind: rules.MissedBatches, Count: tc.count}, misses(tc.pattern)), tc.want)
		})
	}
}

// window24 computes the 24h scores of a producer over a sequence of
// 20-minute batches (the first starting at t0) in which it got a point
// except in the batches listed in missed (numbered from 1), as the
// coordinator counts them.
func window24(n int, missed ...int) []rules.Outcome {
	t0 := time.Date(2024, 6, 5, 0, 0, 0, 0, time.UTC)
	miss := map[int]bool{}
	for _, m := range missed {
		miss[m] = true
	}
	var out []rules.Outcome
	for k := 1; k <= n; k++ {
		at := t0.Add(time.Duration(k) * 20 * time.Minute)
		var points, surveys int64
		for b := 1; b <= k; b++ {
			start := t0.Add(time.Duration(b-1) * 20 * time.Minute)
			if rules.InWindow(start, start.Add(20*time.Minute), at, 24*time.Hour) {
				surveys++
				if !miss[b] {
					points++
				}
			}
		}
		out = append(out, rules.Outcome{Producer: "B62a", Scores: map[string]float64{"24h": rules.Score(points, surveys)}})
	}
	return out
}

func TestScoreBelowWindowEdges(t *testing.T) {
	t.Parallel()
	r := rules.Rule{Kind: rules.ScoreBelow, Window: "24h", Percent: 99}
	// A miss in batch 1 keeps the 24h score at 71/72 = 98.61% until batch 1
	// leaves the window: batch 73's window starts at the end of batch 1.
	equal(t, run(t, r, window24(80, 1)), []string{"1:fired", "73:resolved"})
	// A miss in batch 90 of a full window: 71/72 until batch 162.
	equal(t, run(t, r, window24(170, 90)), []string{"90:fired", "162:resolved"})
	// At 98%: 48/49 = 97.95% is below, 49/50 = 98% is not ("below" is
	// strict), and 71/72 = 98.61% is not either.
	equal(t, run(t, rules.Rule{Kind: rules.ScoreBelow, Window: "24h", Percent: 98}, window24(80, 1)), []string{"1:fired", "50:resolved"})
	// Two misses 30 batches apart: one alert, resolved when the second
	// leaves the window.
	equal(t, run(t, r, window24(210, 100, 130)), []string{"100:fired", "202:resolved"})
}

func TestInWindowEdges(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 6, 6, 0, 0, 0, 0, time.UTC)
	d := 24 * time.Hour
	for _, tc := range []struct {
		start, end time.Time
		want       bool
	}{
		{at.Add(-d), at.Add(-d + 20*time.Minute), true},                     // starts exactly at the window start
		{at.Add(-d - time.Second), at.Add(-d + 20*time.Minute), false},      // starts a second before
		{at.Add(-20 * time.Minute), at, true},                               // ends exactly at the window end
		{at.Add(-20*time.Minute + time.Second), at.Add(time.Second), false}, // ends after it
	} {
		if got := rules.InWindow(tc.start, tc.end, at, d); got != tc.want {
			t.Errorf("InWindow(%s, %s) = %v, want %v", tc.start.Format(time.DateTime), tc.end.Format(time.DateTime), got, tc.want)
		}
	}
}

func TestScoreTruncates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		points, surveys int64
		want            float64
	}{{71, 72, 98.61}, {2, 3, 66.66}, {0, 0, 0}, {72, 72, 100}, {1, 3, 33.33}} {
		if got := rules.Score(tc.points, tc.surveys); got != tc.want {
			t.Errorf("Score(%d, %d) = %v, want %v", tc.points, tc.surveys, got, tc.want)
		}
	}
}

func TestErrorClass(t *testing.T) {
	t.Parallel()
	const class = "sok_digest_mismatch"
	o := func(subs int, failures map[string]int) rules.Outcome {
		return rules.Outcome{Producer: "B62a", Submissions: subs, Failures: failures}
	}
	seq := []rules.Outcome{
		o(3, map[string]int{class: 1}),             // 1: not all failed
		o(3, map[string]int{class: 3}),             // 2: all failed with the class: fire
		o(0, nil),                                  // 3: no submission: nothing known, still firing
		o(2, map[string]int{class: 2}),             // 4: still all failing: no repeat
		o(3, map[string]int{class: 2}),             // 5: one verified: resolved
		o(2, map[string]int{class: 1, "other": 1}), // 6: all failed, but not all with the class
		o(1, map[string]int{"other": 1}),           // 7
		o(4, map[string]int{class: 4}),             // 8: fire again
	}
	equal(t, run(t, rules.Rule{Kind: rules.ErrorClass, Class: class}, seq), []string{"2:fired", "5:resolved", "8:fired"})

	r := rules.Rule{Kind: rules.ErrorClass, Class: class}
	if got, want := r.Reason(rules.Fired, o(3, map[string]int{class: 3})), "3 of 3 submissions failed: sok_digest_mismatch"; got != want {
		t.Errorf("Reason = %q, want %q", got, want)
	}
	if got, want := rules.FailureSummary(o(3, map[string]int{class: 2})), "2 of 3 submissions failed: sok_digest_mismatch"; got != want {
		t.Errorf("FailureSummary = %q, want %q", got, want)
	}
	if got, want := rules.FailureSummary(o(4, map[string]int{class: 2, "block_missing": 1})), "3 of 4 submissions failed: block_missing ×1, sok_digest_mismatch ×2"; got != want {
		t.Errorf("FailureSummary = %q, want %q", got, want)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rule    rules.Rule
		key     string
		wantErr string
	}{
		{rules.Rule{Kind: rules.MissedBatches}, "missed_batches:3", ""},
		{rules.Rule{Kind: rules.MissedBatches, Count: 5}, "missed_batches:5", ""},
		{rules.Rule{Kind: rules.ScoreBelow, Window: "24h", Percent: 95}, "score_below:24h:95", ""},
		{rules.Rule{Kind: rules.ScoreBelow, Window: "7d", Percent: 99.5}, "score_below:7d:99.5", ""},
		{rules.Rule{Kind: rules.ErrorClass, Class: "sok_digest_mismatch"}, "error_class:sok_digest_mismatch", ""},
		{rules.Rule{Kind: rules.MissedBatches, Count: -1}, "", "count must be between 1 and 100000"},
		{rules.Rule{Kind: rules.ScoreBelow, Window: "2h", Percent: 95}, "", `window must be 24h, 7d, 30d or 90d, got "2h"`},
		{rules.Rule{Kind: rules.ScoreBelow, Window: "24h"}, "", "percent must be in (0, 100]"},
		{rules.Rule{Kind: rules.ScoreBelow, Window: "24h", Percent: 101}, "", "percent must be in (0, 100]"},
		{rules.Rule{Kind: rules.ErrorClass}, "", "class must be"},
		{rules.Rule{Kind: rules.MissedBatches, Window: "24h"}, "", "missed_batches takes only count"},
		{rules.Rule{Kind: "uptime"}, "", `unknown rule kind "uptime"`},
		{rules.Rule{}, "", "rule kind is missing"},
	} {
		r, err := tc.rule.Normalize()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tc.rule, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v: error %v, want %q", tc.rule, err, tc.wantErr)
		case tc.wantErr == "" && r.Key() != tc.key:
			t.Errorf("%+v: key %q, want %q", tc.rule, r.Key(), tc.key)
		}
	}
}

func TestReasons(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    rules.Outcome
		want string
	}{
		{rules.Outcome{Result: "no_submission"}, "no submission"},
		{rules.Outcome{Result: "point", Submissions: 3, Valid: 3}, "got a point"},
		{rules.Outcome{Result: "invalid", Submissions: 3, Failures: map[string]int{"sok_digest_mismatch": 3}}, "3 of 3 submissions failed: sok_digest_mismatch"},
		{rules.Outcome{Result: "off_chain", Submissions: 3, Valid: 2, Failures: map[string]int{"block_missing": 1}}, "2 valid submissions, none on the consensus chain; 1 of 3 submissions failed: block_missing"},
		{rules.Outcome{Result: "off_chain", Submissions: 1, Valid: 1}, "1 valid submission, none on the consensus chain"},
		{rules.Outcome{Result: "unverified", Submissions: 2, Unverified: 2}, "2 of 2 submissions never verified"},
	} {
		if got := rules.BatchReason(tc.o); got != tc.want {
			t.Errorf("BatchReason(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
	r := rules.Rule{Kind: rules.MissedBatches, Count: 3}
	o := rules.Outcome{Misses: 3, Result: "invalid", Submissions: 3, Failures: map[string]int{"sok_digest_mismatch": 2, "timeout": 1}}
	if got, want := r.Reason(rules.Fired, o), "no point in the last 3 consecutive batches; this batch: 3 of 3 submissions failed: sok_digest_mismatch ×2, timeout ×1"; got != want {
		t.Errorf("Reason = %q, want %q", got, want)
	}
}
