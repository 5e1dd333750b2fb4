package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// Formats of the commands' output.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteExplanation writes ex as text: one line per batch, then a summary.
func WriteExplanation(w io.Writer, ex *Explanation) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Producer %s, batches ending in [%s, %s):\n", ex.Producer, ex.From.Format(time.RFC3339), ex.To.Format(time.RFC3339))
	for _, r := range ex.Batches {
		mark := " "
		if r.Derived {
			mark = "*"
		}
		switch r.Reason {
		case coordinator.OutcomeNoSubmission, coordinator.OutcomeUnknown:
			fmt.Fprintf(&b, "%s #%-7d %s  %s", mark, r.BotLogID, window(r.WindowStart, r.WindowEnd), r.Reason)
		default:
			fmt.Fprintf(&b, "%s #%-7d %s  %-13s", mark, r.BotLogID, window(r.WindowStart, r.WindowEnd), r.Reason)
			fmt.Fprintf(&b, "  %d %s, %d valid", r.Submissions, plural(r.Submissions, "submission", "submissions"), r.Valid)
			if r.Unverified > 0 {
				fmt.Fprintf(&b, ", %d unverified", r.Unverified)
			}
			if len(r.InvalidByClass) > 0 {
				fmt.Fprintf(&b, ", invalid: %s", classList(r.InvalidByClass))
			}
			if r.Reason == coordinator.OutcomeOffChain && len(r.StateHashes) > 0 {
				fmt.Fprintf(&b, "; named %s (not on the consensus chain)", strings.Join(r.StateHashes, ", "))
			}
		}
		b.WriteByte('\n')
		for _, class := range slices.Sorted(maps.Keys(r.ErrorExamples)) {
			if text := r.ErrorExamples[class]; text != "" {
				fmt.Fprintf(&b, "      %s: %q\n", class, text)
			}
		}
	}
	s := ex.Summary
	fmt.Fprintf(&b, "%d %s, %d %s, %d missed", s.Batches, plural(s.Batches, "batch", "batches"), s.Points, plural(s.Points, "point", "points"), s.Missed)
	if len(s.ByReason) > 0 {
		fmt.Fprintf(&b, " (%s)", reasonList(s.ByReason))
	}
	b.WriteString(".\n")
	if s.Derived > 0 {
		fmt.Fprintf(&b, "* %d %s scored before evidence was recorded: the reason is derived from points_summary and the submissions table, and is unknown where the submissions were cleaned up.\n",
			s.Derived, plural(s.Derived, "batch was", "batches were"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func window(start, end time.Time) string {
	start, end = start.UTC(), end.UTC()
	if start.Format(time.DateOnly) == end.Format(time.DateOnly) {
		return start.Format(time.DateTime) + " – " + end.Format(time.TimeOnly)
	}
	return start.Format(time.DateTime) + " – " + end.Format(time.DateTime)
}

// classList renders counts by class in ClassNames order, unknown classes
// last: "snark_invalid 2, timeout 1".
func classList(m map[string]int) string {
	var parts []string
	for _, c := range ordered(m, coordinator.ClassNames) {
		parts = append(parts, fmt.Sprintf("%s %d", c, m[c]))
	}
	return strings.Join(parts, ", ")
}

func reasonList(m map[string]int) string {
	var parts []string
	for _, r := range ordered(m, coordinator.Outcomes) {
		parts = append(parts, fmt.Sprintf("%s %d", r, m[r]))
	}
	return strings.Join(parts, ", ")
}

// ordered returns m's keys in the order of known, then the others sorted.
func ordered[V any](m map[string]V, known []string) []string {
	var out []string
	for _, k := range known {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			out = append(out, k)
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
