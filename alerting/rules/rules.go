// Package rules holds the semantics of per-producer alert rules: what each
// rule kind means, when its condition holds for a producer after a batch, and
// the fire-once / resolve-once transitions of an alert. It is pure: no I/O,
// no clock; the alerting evaluator feeds it each batch's outcomes and keeps the
// state it returns.
package rules

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is a rule kind.
type Kind string

// The rule kinds.
const (
	// MissedBatches: the producer missed Count consecutive batches.
	MissedBatches Kind = "missed_batches"
	// ScoreBelow: the producer's score over Window fell below Percent.
	ScoreBelow Kind = "score_below"
	// ErrorClass: the producer's submissions in a batch all failed with the
	// verifier error class Class.
	ErrorClass Kind = "error_class"
)

// DefaultMissedCount is the count of a missed_batches rule that names none.
const DefaultMissedCount = 3

// Windows are the score windows a score_below rule may name.
var Windows = map[string]time.Duration{
	"24h": 24 * time.Hour,
	"7d":  7 * 24 * time.Hour,
	"30d": 30 * 24 * time.Hour,
	"90d": 90 * 24 * time.Hour,
}

// Rule is one alert rule of a subscription. Its JSON form is the API's:
// {"kind": "missed_batches", "count": 3}, {"kind": "score_below", "window":
// "24h", "percent": 95}, {"kind": "error_class", "class": "..."}.
type Rule struct {
	Kind    Kind    `json:"kind" yaml:"kind"`
	Count   int     `json:"count,omitempty" yaml:"count,omitempty"`
	Window  string  `json:"window,omitempty" yaml:"window,omitempty"`
	Percent float64 `json:"percent,omitempty" yaml:"percent,omitempty"`
	Class   string  `json:"class,omitempty" yaml:"class,omitempty"`
}

// Normalize fills defaults (count 3 for missed_batches) and checks the rule,
// naming every problem.
func (r Rule) Normalize() (Rule, error) {
	var errs []error
	switch r.Kind {
	case MissedBatches:
		if r.Count == 0 {
			r.Count = DefaultMissedCount
		}
		if r.Count < 1 || r.Count > 100000 {
			errs = append(errs, fmt.Errorf("missed_batches: count must be between 1 and 100000, got %d", r.Count))
		}
		if r.Window != "" || r.Percent != 0 || r.Class != "" {
			errs = append(errs, errors.New("missed_batches takes only count"))
		}
	case ScoreBelow:
		if _, ok := Windows[r.Window]; !ok {
			errs = append(errs, fmt.Errorf("score_below: window must be 24h, 7d, 30d or 90d, got %q", r.Window))
		}
		if !(r.Percent > 0 && r.Percent <= 100) || math.IsNaN(r.Percent) {
			errs = append(errs, fmt.Errorf("score_below: percent must be in (0, 100], got %g", r.Percent))
		}
		if r.Count != 0 || r.Class != "" {
			errs = append(errs, errors.New("score_below takes only window and percent"))
		}
	case ErrorClass:
		if r.Class == "" || len(r.Class) > 100 || strings.ContainsAny(r.Class, " \t\n:") {
			errs = append(errs, fmt.Errorf("error_class: class must be a verifier error class name (no spaces or colons), got %q", r.Class))
		}
		if r.Count != 0 || r.Window != "" || r.Percent != 0 {
			errs = append(errs, errors.New("error_class takes only class"))
		}
	case "":
		errs = append(errs, errors.New("rule kind is missing (missed_batches, score_below or error_class)"))
	default:
		errs = append(errs, fmt.Errorf("unknown rule kind %q (missed_batches, score_below or error_class)", r.Kind))
	}
	return r, errors.Join(errs...)
}

// Key identifies a rule within its subscription: the kind and its
// parameters, e.g. "missed_batches:3", "score_below:24h:95",
// "error_class:sok_digest_mismatch". Alert state is kept per key.
func (r Rule) Key() string {
	switch r.Kind {
	case MissedBatches:
		return fmt.Sprintf("%s:%d", r.Kind, r.Count)
	case ScoreBelow:
		return fmt.Sprintf("%s:%s:%s", r.Kind, r.Window, strconv.FormatFloat(r.Percent, 'f', -1, 64))
	default:
		return fmt.Sprintf("%s:%s", r.Kind, r.Class)
	}
}

// String describes the rule for people.
func (r Rule) String() string {
	switch r.Kind {
	case MissedBatches:
		return fmt.Sprintf("%d consecutive missed %s", r.Count, plural(r.Count, "batch", "batches"))
	case ScoreBelow:
		return fmt.Sprintf("%s score below %s%%", r.Window, strconv.FormatFloat(r.Percent, 'f', -1, 64))
	default:
		return fmt.Sprintf("all submissions failing with %s", r.Class)
	}
}

// Outcome is what one batch means for one producer, with the state the
// rules read. Producers that are not yet in nodes have no outcome.
type Outcome struct {
	Producer string
	// Misses is the number of consecutive batches without a point, this
	// batch included (0: the producer got a point in this batch). It counts
	// from the batch in which the producer first appears in nodes.
	Misses int
	// Scores holds the producer's score percentage over each window the
	// rules need (see Score).
	Scores map[string]float64
	// Submissions is the number of the producer's submissions in the batch;
	// Failures counts the failed ones by verifier error class.
	Submissions int
	Failures    map[string]int
	// Result is the batch's outcome for the producer as the evidence
	// records it: point, off_chain, invalid, unverified or no_submission
	// ("" when unknown).
	Result string
	// Valid and Unverified count the producer's valid and never-verified
	// submissions in the batch.
	Valid, Unverified int
}

// BatchReason says what the batch was for the producer, from the evidence:
// e.g. "no submission", "2 of 3 submissions failed: sok_digest_mismatch",
// "3 valid submissions, none on the consensus chain".
func BatchReason(o Outcome) string {
	switch o.Result {
	case "point":
		return "got a point"
	case "no_submission":
		return "no submission"
	case "off_chain":
		s := fmt.Sprintf("%d valid %s, none on the consensus chain", o.Valid, plural(o.Valid, "submission", "submissions"))
		if f := FailureSummary(o); f != "" && o.Valid < o.Submissions {
			s += "; " + f
		}
		return s
	case "unverified":
		s := fmt.Sprintf("%d of %d %s never verified", o.Unverified, o.Submissions, plural(o.Submissions, "submission", "submissions"))
		if f := FailureSummary(o); f != "" {
			s += "; " + f
		}
		return s
	}
	return FailureSummary(o)
}

// NextMisses is a producer's consecutive-miss count after a batch: 0 when it
// got a point, one more otherwise, whatever the reason.
func NextMisses(prev int, gotPoint bool) int {
	if gotPoint {
		return 0
	}
	return prev + 1
}

// Score is a score percentage as the coordinator computes score_percent:
// trunc(points * 100 / surveys, 2); 0 when there is no survey.
func Score(points, surveys int64) float64 {
	if surveys <= 0 {
		return 0
	}
	return float64(points*10000/surveys) / 100
}

// InWindow reports whether a batch [start, end) counts in the score window of
// length d ending at at: like the coordinator's score, a batch counts when it
// lies inside [at-d, at].
func InWindow(batchStart, batchEnd, at time.Time, d time.Duration) bool {
	return !batchStart.Before(at.Add(-d)) && !batchEnd.After(at)
}

// Holds reports whether the rule's condition holds for the outcome, and
// whether the outcome says anything about it at all: an error_class rule
// learns nothing from a batch in which the producer submitted nothing, so
// its alert keeps its state.
func (r Rule) Holds(o Outcome) (holds, known bool) {
	switch r.Kind {
	case MissedBatches:
		return o.Misses >= r.Count, true
	case ScoreBelow:
		s, ok := o.Scores[r.Window]
		if !ok {
			return false, false
		}
		return s < r.Percent, true
	case ErrorClass:
		if o.Submissions == 0 {
			return false, false
		}
		return o.Failures[r.Class] == o.Submissions, true
	}
	return false, false
}

// Transition is what an alert does after a batch.
type Transition string

// The transitions. None means the alert's state is unchanged and nothing is
// sent.
const (
	None     Transition = ""
	Fired    Transition = "fired"
	Resolved Transition = "resolved"
)

// Step evaluates the rule for one producer after a batch. active is whether
// its alert is firing (it fired and has not resolved). It returns the new
// state and the transition: Fired when the condition became true, Resolved
// when it became false, None otherwise (nothing repeats).
func (r Rule) Step(active bool, o Outcome) (bool, Transition) {
	holds, known := r.Holds(o)
	switch {
	case !known || holds == active:
		return active, None
	case holds:
		return true, Fired
	default:
		return false, Resolved
	}
}

// Reason explains the transition for the message: why the condition holds
// (fired) or no longer holds (resolved).
func (r Rule) Reason(t Transition, o Outcome) string {
	switch r.Kind {
	case MissedBatches:
		if t == Fired {
			s := fmt.Sprintf("no point in the last %d consecutive %s", o.Misses, plural(o.Misses, "batch", "batches"))
			if b := BatchReason(o); b != "" {
				s += "; this batch: " + b
			}
			return s
		}
		return "got a point in this batch"
	case ScoreBelow:
		s := strconv.FormatFloat(o.Scores[r.Window], 'f', -1, 64)
		if t == Fired {
			return fmt.Sprintf("%s score is %s%%, below %s%%", r.Window, s, strconv.FormatFloat(r.Percent, 'f', -1, 64))
		}
		return fmt.Sprintf("%s score is back to %s%%", r.Window, s)
	case ErrorClass:
		if t == Fired {
			return fmt.Sprintf("%d of %d %s failed: %s", o.Failures[r.Class], o.Submissions, plural(o.Submissions, "submission", "submissions"), r.Class)
		}
		if s := FailureSummary(o); s != "" {
			return s
		}
		return fmt.Sprintf("%d %s, none failing with %s", o.Submissions, plural(o.Submissions, "submission", "submissions"), r.Class)
	}
	return ""
}

// FailureSummary describes a producer's failed submissions in a batch, e.g.
// "2 of 3 submissions failed: sok_digest_mismatch"; "" when none failed.
func FailureSummary(o Outcome) string {
	failed := 0
	var classes []string
	for c, n := range o.Failures {
		if n > 0 {
			failed += n
			classes = append(classes, c)
		}
	}
	if failed == 0 {
		return ""
	}
	slices.Sort(classes)
	parts := make([]string, len(classes))
	for i, c := range classes {
		parts[i] = c
		if len(classes) > 1 {
			parts[i] = fmt.Sprintf("%s ×%d", c, o.Failures[c])
		}
	}
	return fmt.Sprintf("%d of %d %s failed: %s", failed, o.Submissions, plural(o.Submissions, "submission", "submissions"), strings.Join(parts, ", "))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
