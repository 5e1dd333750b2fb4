package alert

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// maxErrorText bounds the error text quoted in a message.
const maxErrorText = 1500

// Alerter turns batch events into webhook messages. Its methods are engine
// hooks: a message that cannot be delivered is logged, never returned, so
// alerts never stop the loop.
type Alerter struct {
	Notifier *Notifier
	// VerificationLower and VerificationUpper (ALARM_ZK_LOWER_LIMIT_SEC,
	// ALARM_ZK_UPPER_LIMIT_SEC): alert when a batch's verification took less
	// or more. Nil disables the check.
	VerificationLower, VerificationUpper *time.Duration
	// ValidSharePercent (VALID_SHARE_ALERT_PERCENT): alert when fewer than
	// this percentage of a batch's submissions are valid. Nil disables it.
	ValidSharePercent *float64
	Logger            *slog.Logger
}

// FromConfig builds the Alerter the configuration asks for. With no
// WEBHOOK_URL it sends nothing.
func FromConfig(cfg *config.Config, log *slog.Logger, opts ...Option) *Alerter {
	return &Alerter{
		Notifier:          New(cfg.WebhookURL, opts...),
		VerificationLower: cfg.AlarmLowerLimit,
		VerificationUpper: cfg.AlarmUpperLimit,
		ValidSharePercent: cfg.ValidShareAlertPercent,
		Logger:            log,
	}
}

// Enabled reports whether the Alerter has a webhook to post to.
func (a *Alerter) Enabled() bool { return a != nil && a.Notifier.Enabled() }

func (a *Alerter) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// AfterBatch checks a committed batch's verification time and valid share.
func (a *Alerter) AfterBatch(ctx context.Context, s *coordinator.Summary) {
	if !a.Enabled() {
		return
	}
	for _, msg := range a.batchMessages(s) {
		a.send(ctx, "batch", msg)
	}
}

// OnFailure reports a batch abandoned after its retries (final); failed
// attempts that will be retried are not reported.
func (a *Alerter) OnFailure(ctx context.Context, w coordinator.Window, attempt int, err error, final bool) {
	if !a.Enabled() || !final {
		return
	}
	msg := fmt.Sprintf(":rotating_light: Batch %s was abandoned after %d %s; the coordinator is exiting and no later batch will be processed until it is restarted.\nLast error: %s",
		Window(w), attempt+1, plural(attempt+1, "attempt", "attempts"), truncate(err.Error(), maxErrorText))
	a.send(ctx, "abandoned batch", msg)
}

func (a *Alerter) batchMessages(s *coordinator.Summary) []string {
	var msgs []string
	v := s.Verification
	if a.VerificationLower != nil && v < *a.VerificationLower {
		msgs = append(msgs, fmt.Sprintf(":warning: Verification of batch %s took %s, less than the lower limit of %s (ALARM_ZK_LOWER_LIMIT_SEC): suspiciously quick.",
			Window(s.Window), seconds(v), seconds(*a.VerificationLower)))
	}
	if a.VerificationUpper != nil && v > *a.VerificationUpper {
		msgs = append(msgs, fmt.Sprintf(":warning: Verification of batch %s took %s, more than the upper limit of %s (ALARM_ZK_UPPER_LIMIT_SEC): too long.",
			Window(s.Window), seconds(v), seconds(*a.VerificationUpper)))
	}
	if a.ValidSharePercent != nil && s.Submissions > 0 && s.Result != nil {
		valid := len(s.Result.Valid)
		share := 100 * float64(valid) / float64(s.Submissions)
		if share < *a.ValidSharePercent {
			msgs = append(msgs, fmt.Sprintf(":warning: Only %.1f%% of the submissions of batch %s are valid (%d of %d), below %g%% (VALID_SHARE_ALERT_PERCENT).%s",
				share, Window(s.Window), valid, s.Submissions, *a.ValidSharePercent, invalidBreakdown(s.Result.Invalid)))
		}
	}
	return msgs
}

func (a *Alerter) send(ctx context.Context, kind, msg string) {
	if err := a.Notifier.Send(ctx, msg); err != nil {
		a.log().Error("alert not delivered", "alert", kind, "webhook_host", a.Notifier.Host(), "error", err)
		return
	}
	a.log().Info("alert sent", "alert", kind, "webhook_host", a.Notifier.Host())
}

// Window renders a batch window for messages, in UTC.
func Window(w coordinator.Window) string {
	start, end := w.Start.UTC(), w.End.UTC()
	if start.Format(time.DateOnly) == end.Format(time.DateOnly) {
		return start.Format(time.DateTime) + " – " + end.Format(time.TimeOnly) + " UTC"
	}
	return start.Format(time.DateTime) + " – " + end.Format(time.DateTime) + " UTC"
}

func invalidBreakdown(invalid map[string]int) string {
	reasons := make([]string, 0, len(invalid))
	for r, n := range invalid {
		if n > 0 {
			reasons = append(reasons, r)
		}
	}
	if len(reasons) == 0 {
		return ""
	}
	slices.Sort(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, invalid[r])
	}
	return " Invalid: " + strings.Join(parts, ", ") + "."
}

// seconds renders d in seconds, the unit of the limits, with a readable form
// when it is a minute or more.
func seconds(d time.Duration) string {
	s := fmt.Sprintf("%.1fs", d.Seconds())
	if d >= time.Minute {
		s += " (" + d.Round(time.Second).String() + ")"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
