// Package alert composes the coordinator's operator alerts: unusual
// verification times, abandoned batches and batches with a low share of
// valid submissions.
package alert

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// maxErrorText bounds the error text quoted in a message.
const maxErrorText = 1500

// Alerter composes the operator alerts: unusual verification times, batches
// with a low share of valid submissions and abandoned batches. They go to
// WEBHOOK_URL through the same outbox and delivery queue as the
// per-producer alerts (package alerting).
type Alerter struct {
	// On is true when WEBHOOK_URL is set; without it no alert is composed.
	On bool
	// VerificationLower and VerificationUpper (ALARM_ZK_LOWER_LIMIT_SEC,
	// ALARM_ZK_UPPER_LIMIT_SEC): alert when a batch's verification took less
	// or more. Nil disables the check.
	VerificationLower, VerificationUpper *time.Duration
	// ValidSharePercent (VALID_SHARE_ALERT_PERCENT): alert when fewer than
	// this percentage of a batch's submissions are valid. Nil disables it.
	ValidSharePercent *float64
	// ProducerDropPercent (PRODUCER_DROP_ALERT_PERCENT): alert when the
	// number of producers submitting in a batch drops by more than this
	// percentage against the previous batch. 0 disables it.
	ProducerDropPercent float64
	// Mask, when set, hides secrets in every message
	// (config.SecretMasker(cfg.Secrets())): an error quoted in an alert
	// may carry one.
	Mask *strings.Replacer
}

func (a *Alerter) masked(msgs []Message) []Message {
	if a.Mask != nil {
		for i := range msgs {
			msgs[i].Text = a.Mask.Replace(msgs[i].Text)
		}
	}
	return msgs
}

// FromConfig builds the Alerter the configuration asks for.
func FromConfig(cfg config.Alerts) *Alerter {
	return &Alerter{
		On:                  cfg.WebhookURL != "",
		VerificationLower:   cfg.ZKLowerLimit,
		VerificationUpper:   cfg.ZKUpperLimit,
		ValidSharePercent:   cfg.ValidSharePercent,
		ProducerDropPercent: cfg.ProducerDropPercent,
	}
}

// Enabled reports whether operator alerts are on (WEBHOOK_URL is set).
func (a *Alerter) Enabled() bool { return a != nil && a.On }

// Message is one operator alert; Kind names the check.
type Message struct {
	Kind string // verification_time, valid_share, no_submissions, producer_drop, error_class_jump, abandoned_batch
	Text string
}

// Abandoned returns the alert of a batch abandoned after its retries, or
// nothing for a failed attempt that will be retried.
func (a *Alerter) Abandoned(f coordinator.Failure) []Message {
	if !a.Enabled() || !f.Final {
		return nil
	}
	batch := "The next batch (its window could not be read)"
	if f.Window != nil {
		batch = "Batch " + Window(*f.Window)
	}
	n := f.Attempt + 1
	return a.masked([]Message{{Kind: "abandoned_batch", Text: fmt.Sprintf(":rotating_light: %s was abandoned after %d %s; the coordinator is exiting and no later batch will be processed until it is restarted.\nLast error: %s",
		batch, n, plural(n, "attempt", "attempts"), truncate(f.Err.Error(), maxErrorText))}})
}

// Batch returns the alerts of a batch: a window without submissions, a drop
// of the producers submitting, its verification time, a verifier error
// class whose share of the submissions jumped from under 1% in the previous
// batch to over 10% (coordinator.ClassJumps; needs s.Evidence and
// s.Committed.PreviousShares) and its share of valid submissions.
func (a *Alerter) Batch(s *coordinator.Summary) []Message {
	if !a.Enabled() {
		return nil
	}
	var msgs []Message
	if s.Submissions == 0 {
		msgs = append(msgs, Message{"no_submissions", fmt.Sprintf(":rotating_light: No submissions in window %s: the batch was committed as a survey in which no producer earns a point. Is the collector down, or SUBMISSION_STORAGE pointing at the wrong store?",
			Window(s.Window))})
	} else if prev := s.PrevSubmitters; a.ProducerDropPercent > 0 && prev > 0 {
		if drop := 100 * float64(prev-s.Submitters) / float64(prev); drop > a.ProducerDropPercent {
			msgs = append(msgs, Message{"producer_drop", fmt.Sprintf(":warning: Producers submitting in window %s dropped by %.1f%%, from %d to %d, more than %g%% (PRODUCER_DROP_ALERT_PERCENT). Is the collector losing submissions?",
				Window(s.Window), drop, prev, s.Submitters, a.ProducerDropPercent)})
		}
	}
	v := s.Verification
	if a.VerificationLower != nil && v < *a.VerificationLower {
		msgs = append(msgs, Message{"verification_time", fmt.Sprintf(":warning: Verification of batch %s took %s, less than the lower limit of %s (ALARM_ZK_LOWER_LIMIT_SEC): suspiciously quick.",
			Window(s.Window), seconds(v), seconds(*a.VerificationLower))})
	}
	if a.VerificationUpper != nil && v > *a.VerificationUpper {
		msgs = append(msgs, Message{"verification_time", fmt.Sprintf(":warning: Verification of batch %s took %s, more than the upper limit of %s (ALARM_ZK_UPPER_LIMIT_SEC): too long.",
			Window(s.Window), seconds(v), seconds(*a.VerificationUpper))})
	}
	if s.Evidence != nil {
		// Consecutive batches only: a class that stays high fires once.
		for _, j := range coordinator.ClassJumps(s.Committed.PreviousShares, s.Evidence.Shares(s.Committed.BotLogID)) {
			example := ""
			for _, c := range s.Evidence.Classes {
				if c.Class == j.Class && c.Example != "" {
					example = fmt.Sprintf(" Example: %q.", truncate(c.Example, 300))
				}
			}
			msgs = append(msgs, Message{"error_class_jump", fmt.Sprintf(":rotating_light: Verifier error class %s jumped from %.1f%% to %.1f%% of the submissions in batch %s (%d of %d failed with it): a verifier or network change may be failing good submissions.%s",
				j.Class, 100*j.Before, 100*j.After, Window(s.Window), j.Failed, j.Submissions, example)})
		}
	}
	if a.ValidSharePercent != nil && s.Submissions > 0 && s.Result != nil {
		valid := len(s.Result.Valid)
		share := 100 * float64(valid) / float64(s.Submissions)
		if share < *a.ValidSharePercent {
			msgs = append(msgs, Message{"valid_share", fmt.Sprintf(":warning: Only %.1f%% of the submissions of batch %s are valid (%d of %d), below %g%% (VALID_SHARE_ALERT_PERCENT).%s",
				share, Window(s.Window), valid, s.Submissions, *a.ValidSharePercent, invalidBreakdown(s.Result.Invalid))})
		}
	}
	return a.masked(msgs)
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
