package alert_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
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

// syncBuffer is a log destination the race detector accepts.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func alerter(t *testing.T, h *hook, env map[string]string) (*alert.Alerter, *syncBuffer) {
	t.Helper()
	base := map[string]string{
		"POSTGRES_HOST": "localhost", "POSTGRES_DB": "db", "POSTGRES_USER": "u",
		"WORKER_MODE": "none", "IGNORE_APPLICATION_STATUS": "1",
	}
	if h != nil {
		base["WEBHOOK_URL"] = h.url()
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	a := alert.FromConfig(cfg, slog.New(slog.NewTextHandler(&logs, nil)), fast())
	return a, &logs
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
			h := newHook(t)
			a, _ := alerter(t, h, tc.env)
			a.AfterBatch(context.Background(), summary(10, 10, tc.took))
			got := h.received()
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
		{"no submission", 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t)
			a, _ := alerter(t, h, env)
			a.AfterBatch(context.Background(), summary(tc.submissions, tc.good, time.Minute))
			got := h.received()
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("sent %q, want nothing", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("sent %q, want one message with %q", got, tc.want)
			}
			if tc.submissions > tc.good && !strings.Contains(got[0], coordinator.ReasonRejected) {
				t.Errorf("message %q does not break the invalid submissions down", got[0])
			}
		})
	}
}

func TestValidShareAlertUnset(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a, _ := alerter(t, h, nil)
	a.AfterBatch(context.Background(), summary(100, 0, time.Minute))
	if got := h.received(); len(got) != 0 {
		t.Fatalf("sent %q without VALID_SHARE_ALERT_PERCENT", got)
	}
}

func TestAbandonedBatchAlert(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a, _ := alerter(t, h, nil)
	cause := errors.New(`committing the batch: ERROR: relation "points" does not exist`)
	a.OnFailure(context.Background(), window, 0, cause, false)
	a.OnFailure(context.Background(), window, 1, cause, false)
	if got := h.received(); len(got) != 0 {
		t.Fatalf("sent %q for attempts that will be retried", got)
	}
	a.OnFailure(context.Background(), window, 3, cause, true)
	got := h.received()
	if len(got) != 1 {
		t.Fatalf("sent %d messages for an abandoned batch, want 1", len(got))
	}
	for _, want := range []string{windowText, "abandoned after 4 attempts", cause.Error(), "exiting"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("message %q lacks %q", got[0], want)
		}
	}
}

func TestNothingSentWithoutWebhook(t *testing.T) {
	t.Parallel()
	h := newHook(t) // listening, but not configured
	a, logs := alerter(t, nil, map[string]string{
		"ALARM_ZK_LOWER_LIMIT_SEC": "60", "ALARM_ZK_UPPER_LIMIT_SEC": "61", "VALID_SHARE_ALERT_PERCENT": "100",
	})
	if a.Enabled() {
		t.Fatal("alerter enabled without WEBHOOK_URL")
	}
	a.AfterBatch(context.Background(), summary(10, 1, time.Second))
	a.AfterBatch(context.Background(), summary(10, 1, time.Hour))
	a.OnFailure(context.Background(), window, 3, errors.New("boom"), true)
	if got := h.received(); len(got) != 0 {
		t.Fatalf("sent %q without WEBHOOK_URL", got)
	}
	if logs.String() != "" {
		t.Errorf("logged %q without WEBHOOK_URL", logs.String())
	}
}

func TestFailingWebhookIsLoggedNotFatal(t *testing.T) {
	t.Parallel()
	h := newHook(t, status(http.StatusServiceUnavailable))
	a, logs := alerter(t, h, map[string]string{"ALARM_ZK_UPPER_LIMIT_SEC": "1", "VALID_SHARE_ALERT_PERCENT": "90"})
	start := time.Now()
	a.AfterBatch(context.Background(), summary(10, 1, time.Hour))
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("AfterBatch blocked %v on a failing webhook", el)
	}
	if got := len(h.received()); got != 6 { // two messages, three tries each
		t.Errorf("webhook saw %d tries, want 6", got)
	}
	out := logs.String()
	if strings.Count(out, "alert not delivered") != 2 || !strings.Contains(out, h.srv.Listener.Addr().String()) {
		t.Errorf("logs %q: want two failures naming the webhook host", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("logs show the webhook token: %q", out)
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
