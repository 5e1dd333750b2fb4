package alert

import (
	"fmt"
	"time"
)

// Operation summarises a run of the rescore or reverify command for the
// operator channel.
type Operation struct {
	Command  string    // "rescore" or "reverify"
	From, To time.Time // the range of window ends, [From, To)
	// Err is the failure, or nil when the command finished.
	Err error

	// reverify: the windows and submissions re-verified; Rescored when
	// --rescore followed (then the rescore fields are set).
	Windows, Submissions int
	Rescored             bool

	// rescore: batches re-scored (Extended of them after the range),
	// producers whose outcome changed, the batch points they gained and
	// lost, and the nodes whose score changed.
	Batches, Extended                      int
	ProducersChanged, Gained, Lost, Scores int
}

// Operation returns the alert of a finished or failed rescore or reverify
// (an operator's change of past scores: the team should know it happened
// and what it changed).
func (a *Alerter) Operation(o Operation) []Message {
	if !a.Enabled() {
		return nil
	}
	span := fmt.Sprintf("the batches ending in [%s, %s) UTC", o.From.UTC().Format(time.DateTime), o.To.UTC().Format(time.DateTime))
	if o.Err != nil {
		what := "nothing was changed"
		if o.Command == "reverify" {
			what = "the range's submissions may be partly unverified until reverify is run again; scores are unchanged"
		}
		return a.masked([]Message{{Kind: o.Command + "_failed", Text: fmt.Sprintf(":rotating_light: %s of %s failed: %s.\nError: %s",
			o.Command, span, what, truncate(o.Err.Error(), maxErrorText))}})
	}
	text := ":information_source: " + o.Command + " of " + span + " finished: "
	if o.Command == "reverify" {
		text += fmt.Sprintf("%d %s re-verified in %d %s", o.Submissions, plural(o.Submissions, "submission", "submissions"),
			o.Windows, plural(o.Windows, "window", "windows"))
		if !o.Rescored {
			return a.masked([]Message{{Kind: o.Command, Text: text + "; scores are unchanged until the range is re-scored."}})
		}
		text += ", then "
	}
	text += fmt.Sprintf("%d %s re-scored", o.Batches, plural(o.Batches, "batch", "batches"))
	if o.Extended > 0 {
		text += fmt.Sprintf(" (%d after the range)", o.Extended)
	}
	text += fmt.Sprintf("; %d %s changed outcome (%d batch %s gained, %d lost); %d %s changed.",
		o.ProducersChanged, plural(o.ProducersChanged, "producer", "producers"), o.Gained, plural(o.Gained, "point", "points"), o.Lost,
		o.Scores, plural(o.Scores, "score", "scores"))
	return a.masked([]Message{{Kind: o.Command, Text: text}})
}
