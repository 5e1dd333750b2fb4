package alert_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
)

var window = coordinator.Window{
	Start: time.Date(2024, 6, 5, 12, 0, 0, 0, time.UTC),
	End:   time.Date(2024, 6, 5, 12, 20, 0, 0, time.UTC),
}

const windowText = "2024-06-05 12:00:00 – 12:20:00 UTC"

// summary is a committed batch with valid of its submissions valid.
func summary(submissions, valid int, verification time.Duration) *coordinator.Summary {
	r := &coordinator.Result{Invalid: map[string]int{}}
	for range valid {
		r.Valid = append(r.Valid, &coordinator.Submission{})
	}
	if n := submissions - valid; n > 0 {
		r.Invalid[coordinator.ReasonRejected] = n
	}
	return &coordinator.Summary{Window: window, Submissions: submissions, Result: r, Verification: verification}
}

func alerter(t *testing.T, webhook bool, env map[string]string) *alert.Alerter {
	t.Helper()
	base := map[string]string{
		"POSTGRES_HOST": "localhost", "POSTGRES_DB": "db", "POSTGRES_USER": "u",
		"WORKER_MODE": "none", "IGNORE_APPLICATION_STATUS": "1",
	}
	if webhook {
		base["WEBHOOK_URL"] = "https://hooks.slack.com/services/T0000/B0000/s3cr3t"
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return alert.FromConfig(cfg.Alerts)
}

func texts(msgs []alert.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

func TestVerificationTimeAlerts(t *testing.T) {
	t.Parallel()
	limits := map[string]string{"ALARM_ZK_LOWER_LIMIT_SEC": "60", "ALARM_ZK_UPPER_LIMIT_SEC": "900"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		took time.Duration
		want string // "" for no message
	}{
		{"too quick", limits, 12 * time.Second, "took 12.0s, less than the lower limit of 60.0s"},
		{"too long", limits, 1000 * time.Second, "took 1000.0s (16m40s), more than the upper limit of 900.0s (15m0s)"},
		{"in range", limits, 300 * time.Second, ""},
		{"at the lower limit", limits, 60 * time.Second, ""},
		{"at the upper limit", limits, 900 * time.Second, ""},
		{"only upper set, quick", map[string]string{"ALARM_ZK_UPPER_LIMIT_SEC": "900"}, time.Second, ""},
		{"only lower set, long", map[string]string{"ALARM_ZK_LOWER_LIMIT_SEC": "60"}, time.Hour, ""},
		{"none set", nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := alerter(t, true, tc.env)
			got := texts(a.Batch(summary(10, 10, tc.took)))
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("sent %q, want nothing", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], windowText) {
				t.Fatalf("sent %q, want one message with %q and the window %q", got, tc.want, windowText)
			}
		})
	}
}

func TestValidShareAlert(t *testing.T) {
	t.Parallel()
	env := map[string]string{"VALID_SHARE_ALERT_PERCENT": "50"}
	for _, tc := range []struct {
		name              string
		submissions, good int
		want              string
	}{
		{"below", 200, 40, "Only 20.0% of the submissions of batch " + windowText + " are valid (40 of 200), below 50%"},
		{"none valid", 3, 0, "Only 0.0%"},
		{"at the threshold", 200, 100, ""},
		{"above", 200, 190, ""},
		// The valid share is not alerted; the empty window is (and only it).
		{"no submission", 0, 0, "No submissions in window " + windowText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := alerter(t, true, env)
			got := texts(a.Batch(summary(tc.submissions, tc.good, time.Minute)))
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("sent %q, want nothing", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("sent %q, want one message with %q", got, tc.want)
			}
			if tc.submissions > tc.good && tc.good > 0 && !strings.Contains(got[0], coordinator.ReasonRejected) {
				t.Errorf("message %q does not break the invalid submissions down", got[0])
			}
		})
	}
}

// Issue 10 item 2: an empty window and a drop of submitting producers
// against the previous batch are alerted.
func TestSubmissionSupplyAlerts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                          string
		env                           map[string]string
		submissions, submitters, prev int
		want                          string
	}{
		{"steady", nil, 290, 97, 100, ""},
		{"drop of exactly 50%", nil, 150, 50, 100, ""},
		{"drop over the default 50%", nil, 147, 49, 100,
			"Producers submitting in window " + windowText + " dropped by 51.0%, from 100 to 49, more than 50% (PRODUCER_DROP_ALERT_PERCENT)"},
		{"custom threshold", map[string]string{"PRODUCER_DROP_ALERT_PERCENT": "10"}, 270, 89, 100, "dropped by 11.0%, from 100 to 89, more than 10%"},
		{"disabled", map[string]string{"PRODUCER_DROP_ALERT_PERCENT": "0"}, 3, 1, 100, ""},
		{"no previous batch", nil, 3, 1, 0, ""},
		{"empty window", nil, 0, 0, 100, "No submissions in window " + windowText + ": the batch was committed as a survey in which no producer earns a point"},
		{"empty first window, drop alert off", map[string]string{"PRODUCER_DROP_ALERT_PERCENT": "0"}, 0, 0, 0, "No submissions in window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := summary(tc.submissions, tc.submissions, time.Minute)
			s.Submitters, s.PrevSubmitters = tc.submitters, tc.prev
			got := texts(alerter(t, true, tc.env).Batch(s))
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("sent %q, want nothing", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("sent %q, want one message with %q", got, tc.want)
			}
		})
	}
}

func TestValidShareAlertUnset(t *testing.T) {
	t.Parallel()
	a := alerter(t, true, nil)
	if got := a.Batch(summary(100, 0, time.Minute)); len(got) != 0 {
		t.Fatalf("sent %q without VALID_SHARE_ALERT_PERCENT", got)
	}
}

func TestAbandonedBatchAlert(t *testing.T) {
	t.Parallel()
	a := alerter(t, true, nil)
	cause := errors.New(`committing the batch: ERROR: relation "points" does not exist`)
	if got := append(a.Abandoned(failure(&window, 0, cause, false)), a.Abandoned(failure(&window, 1, cause, false))...); len(got) != 0 {
		t.Fatalf("sent %q for attempts that will be retried", texts(got))
	}
	got := texts(a.Abandoned(failure(&window, 3, cause, true)))
	if len(got) != 1 {
		t.Fatalf("sent %d messages for an abandoned batch, want 1", len(got))
	}
	for _, want := range []string{windowText, "abandoned after 4 attempts", cause.Error(), "exiting"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("message %q lacks %q", got[0], want)
		}
	}
}

func failure(w *coordinator.Window, attempt int, err error, final bool) coordinator.Failure {
	return coordinator.Failure{Window: w, Attempt: attempt, Err: err, Final: final}
}

// Issue 10 item 6: when the latest batch could not be read, the alert names
// no window (it used to name one in year 0001).
func TestAbandonedUnreadWindowNamesNoWindow(t *testing.T) {
	t.Parallel()
	got := texts(alerter(t, true, nil).Abandoned(failure(nil, 0, errors.New("reading the latest batch: boom"), true)))
	if len(got) != 1 || !strings.HasPrefix(got[0], ":rotating_light: The next batch (its window could not be read) was abandoned after 1 attempt;") ||
		strings.Contains(got[0], "0001") {
		t.Fatalf("sent %q", got)
	}
}

func TestNothingSentWithoutWebhook(t *testing.T) {
	t.Parallel()
	a := alerter(t, false, map[string]string{
		"ALARM_ZK_LOWER_LIMIT_SEC": "60", "ALARM_ZK_UPPER_LIMIT_SEC": "61", "VALID_SHARE_ALERT_PERCENT": "100",
	})
	if a.Enabled() {
		t.Fatal("alerter enabled without WEBHOOK_URL")
	}
	got := append(a.Batch(summary(10, 1, time.Second)), a.Batch(summary(10, 1, time.Hour))...)
	got = append(got, a.Abandoned(failure(&window, 3, errors.New("boom"), true))...)
	if len(got) != 0 {
		t.Fatalf("composed %q without WEBHOOK_URL", texts(got))
	}
}

func TestWindowFormat(t *testing.T) {
	t.Parallel()
	if got := alert.Window(window); got != windowText {
		t.Errorf("Window = %q, want %q", got, windowText)
	}
	midnight := coordinator.Window{Start: window.Start.Add(11*time.Hour + 40*time.Minute), End: window.Start.Add(12 * time.Hour)}
	if got, want := alert.Window(midnight), "2024-06-05 23:40:00 – 2024-06-06 00:00:00 UTC"; got != want {
		t.Errorf("Window = %q, want %q", got, want)
	}
}

// TestErrorClassJump: a class going from under 1% to over 10% of the
// submissions between consecutive batches alerts once; staying high, or a
// first batch without a previous one, does not.
func TestErrorClassJump(t *testing.T) {
	t.Parallel()
	a := alerter(t, true, nil)
	batch := func(prev *coordinator.ClassShares, subs int, classes ...coordinator.ClassCount) *coordinator.Summary {
		s := summary(subs, subs, time.Minute)
		s.Evidence = &coordinator.BatchEvidence{Submissions: subs, Classes: classes}
		s.Committed = coordinator.Committed{BotLogID: 9, PreviousShares: prev}
		return s
	}
	calm := &coordinator.ClassShares{Submissions: 1000, ByClass: map[string]int{"sok_digest_mismatch": 5}}
	storm := &coordinator.ClassShares{Submissions: 1000, ByClass: map[string]int{"sok_digest_mismatch": 230}}
	stormy := coordinator.ClassCount{Class: "sok_digest_mismatch", Submissions: 230, Producers: 80, Example: "Sok digest mismatch for prover B62q"}

	got := texts(a.Batch(batch(calm, 1000, stormy)))
	want := ":rotating_light: Verifier error class sok_digest_mismatch jumped from 0.5% to 23.0% of the submissions in batch " + windowText +
		" (230 of 1000 failed with it): a verifier or network change may be failing good submissions. Example: \"Sok digest mismatch for prover B62q\"."
	if len(got) != 1 || got[0] != want {
		t.Errorf("jump: %q\nwant %q", got, want)
	}
	for name, s := range map[string]*coordinator.Summary{
		"stays high":    batch(storm, 1000, stormy),
		"no previous":   batch(nil, 1000, stormy),
		"no evidence":   summary(1000, 1000, time.Minute),
		"under 10% now": batch(calm, 1000, coordinator.ClassCount{Class: "sok_digest_mismatch", Submissions: 100}),
	} {
		if got := a.Batch(s); len(got) != 0 {
			t.Errorf("%s: %q, want no alert", name, texts(got))
		}
	}
	if got := alerter(t, false, nil).Batch(batch(calm, 1000, stormy)); len(got) != 0 {
		t.Errorf("without WEBHOOK_URL: %q", texts(got))
	}
}
