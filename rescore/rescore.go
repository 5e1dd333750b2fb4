// Package rescore holds the operator commands that re-score and re-verify
// past batches: argument checks, the report renderings and re-verification
// (the re-scoring itself is database/postgres.Rescore).
package rescore

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
)

// Formats of the report.
const (
	FormatText = inspect.FormatText
	FormatJSON = inspect.FormatJSON
)

// Range parses --from and --to (RFC 3339 or "YYYY-MM-DD HH:MM:SS" UTC, as
// for explain); both are required and from must be before to.
func Range(from, to string) (time.Time, time.Time, error) {
	if from == "" || to == "" {
		return time.Time{}, time.Time{}, fmt.Errorf("--from and --to are both required")
	}
	f, err := inspect.ParseTime(from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--from: %w", err)
	}
	t, err := inspect.ParseTime(to)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--to: %w", err)
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, fmt.Errorf("--from %s is not before --to %s", f.Format(time.RFC3339), t.Format(time.RFC3339))
	}
	return f, t, nil
}

// CheckFormat accepts text and json.
func CheckFormat(f string) error { return inspect.CheckFormat(f) }

// Write renders a rescore report in format.
func Write(w io.Writer, rep *postgres.RescoreReport, format string) error {
	if format == FormatJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rep.Producers == nil {
			rep.Producers = []postgres.ProducerChange{}
		}
		return enc.Encode(rep)
	}
	_, err := io.WriteString(w, Text(rep))
	return err
}

// Text is the text rendering of a report: a header, the counts, then one
// block per producer whose outcome changes.
func Text(rep *postgres.RescoreReport) string {
	var b strings.Builder
	mode := "rescore"
	if rep.DryRun {
		mode = "rescore (dry run: nothing written)"
	}
	fmt.Fprintf(&b, "%s of the batches ending in [%s, %s) UTC\n", mode, rep.From.Format(time.DateTime), rep.To.Format(time.DateTime))
	if rep.Batches == 0 {
		b.WriteString("no committed batch ends in the range\n")
		return b.String()
	}
	fmt.Fprintf(&b, "%d batches re-scored, ending %s to %s", rep.Batches, rep.FirstBatchEnd.Format(time.DateTime), rep.LastBatchEnd.Format(time.DateTime))
	if rep.Extended > 0 {
		fmt.Fprintf(&b, " (%d after the range: the shortlist they start from changed)", rep.Extended)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "points +%d -%d, points_summary +%d -%d, shortlists replaced %d, bot_logs updated %d, score_history -%d +%d",
		rep.PointsAdded, rep.PointsRemoved, rep.SummaryAdded, rep.SummaryRemoved, rep.ShortlistsReplaced, rep.BotLogsUpdated,
		rep.HistoryDeleted, rep.HistoryInserted)
	if !rep.DryRun {
		fmt.Fprintf(&b, ", scores changed %d, nodes removed %d, state hashes removed %d", rep.ScoresChanged, rep.NodesRemoved, rep.StateHashesRemoved)
	}
	b.WriteString("\n")
	if len(rep.Producers) == 0 {
		b.WriteString("no producer's outcome changes\n")
		return b.String()
	}
	fmt.Fprintf(&b, "%d producers' outcome changes:\n", len(rep.Producers))
	for _, p := range rep.Producers {
		fmt.Fprintf(&b, "%s\n  points in range %d -> %d, score_percent %s -> %s\n", p.Producer, p.PointsBefore, p.PointsAfter,
			pct(p.ScorePercentBefore), pct(p.ScorePercentAfter))
		if len(p.BatchesGained) > 0 {
			fmt.Fprintf(&b, "  gained %d: %s\n", len(p.BatchesGained), times(p.BatchesGained))
		}
		if len(p.BatchesLost) > 0 {
			fmt.Fprintf(&b, "  lost %d: %s\n", len(p.BatchesLost), times(p.BatchesLost))
		}
	}
	return b.String()
}

func pct(p *string) string {
	if p == nil {
		return "none"
	}
	return *p
}

func times(ts []time.Time) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.UTC().Format(time.DateTime)
	}
	return strings.Join(s, ", ")
}

// Operation is the summary of an applied report for the operator alert
// (alert.Alerter.Operation).
func Operation(command string, rep *postgres.RescoreReport) alert.Operation {
	o := alert.Operation{Command: command, From: rep.From, To: rep.To, Batches: rep.Batches, Extended: rep.Extended,
		ProducersChanged: len(rep.Producers), Scores: int(rep.ScoresChanged)}
	for _, p := range rep.Producers {
		o.Gained += len(p.BatchesGained)
		o.Lost += len(p.BatchesLost)
	}
	return o
}

// LogAttrs is the summary of a report as log attributes (the line the
// alerter can forward).
func LogAttrs(rep *postgres.RescoreReport) []any {
	var gained, lost int
	for _, p := range rep.Producers {
		gained += len(p.BatchesGained)
		lost += len(p.BatchesLost)
	}
	return []any{"from", rep.From, "to", rep.To, "dry_run", rep.DryRun, "batches", rep.Batches, "extended_batches", rep.Extended,
		"producers_changed", len(rep.Producers), "batch_points_gained", gained, "batch_points_lost", lost,
		"points_added", rep.PointsAdded, "points_removed", rep.PointsRemoved,
		"score_history_replaced", rep.HistoryInserted, "scores_changed", rep.ScoresChanged,
		"nodes_removed", rep.NodesRemoved, "statehash_removed", rep.StateHashesRemoved}
}
