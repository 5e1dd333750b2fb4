package api

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

// table is a response that has a CSV form: a header and rows.
type table interface {
	csvTable() ([]string, [][]string)
}

var csvFormat = huma.Format{
	Marshal: func(w io.Writer, v any) error {
		t, ok := v.(table)
		if !ok {
			return fmt.Errorf("%T has no CSV form", v)
		}
		header, rows := t.csvTable()
		cw := csv.NewWriter(w)
		if err := cw.Write(header); err != nil {
			return err
		}
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		return cw.Error()
	},
	Unmarshal: func([]byte, any) error { return fmt.Errorf("CSV request bodies are not accepted") },
}

func fmtFloat(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'f', 2, 64)
}

func fmtBool(b *bool) string {
	if b == nil {
		return ""
	}
	return strconv.FormatBool(*b)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (l *Leaderboard) csvTable() ([]string, [][]string) {
	rows := make([][]string, len(l.Items))
	for i, it := range l.Items {
		rows[i] = []string{strconv.Itoa(it.Rank), it.Producer, strconv.Itoa(it.Points), fmtFloat(it.ScorePercent), fmtBool(it.ApplicationStatus)}
	}
	return []string{"rank", "producer", "points", "score_percent", "application_status"}, rows
}

func (p *Producer) csvTable() ([]string, [][]string) {
	rows := make([][]string, len(p.Scores))
	for i, s := range p.Scores {
		rows[i] = []string{p.Producer, s.Window, strconv.Itoa(s.Points), strconv.Itoa(s.Surveys), fmtFloat(s.ScorePercent)}
	}
	return []string{"producer", "window", "points", "surveys", "score_percent"}, rows
}

func (h *History) csvTable() ([]string, [][]string) {
	rows := make([][]string, len(h.Items))
	for i, p := range h.Items {
		rows[i] = []string{fmtTime(p.ScoreAt), strconv.Itoa(p.Score), fmtFloat(p.ScorePercent)}
	}
	return []string{"score_at", "score", "score_percent"}, rows
}

var batchHeader = []string{"bot_log_id", "start", "end", "valid_submissions", "producers_with_point", "shortlisted_hashes", "consensus_hashes",
	"duration_seconds", "submissions", "error_classes"}

func (b *Batch) csvRow() []string {
	d := ""
	if b.DurationSeconds != nil {
		d = strconv.FormatFloat(*b.DurationSeconds, 'f', -1, 64)
	}
	subs := ""
	if b.Evidence != nil {
		subs = strconv.Itoa(b.Evidence.Submissions)
	}
	classes := make([]string, len(b.ErrorClasses))
	for i, c := range b.ErrorClasses {
		classes[i] = c.Class + "=" + strconv.Itoa(c.Submissions)
	}
	return []string{strconv.FormatInt(b.ID, 10), fmtTime(b.Start), fmtTime(b.End), strconv.Itoa(b.ValidSubmissions),
		strconv.Itoa(b.ProducersPointed), strconv.Itoa(b.ShortlistSize), strings.Join(b.ConsensusHashes, " "), d, subs,
		strings.Join(classes, " ")}
}

func (b *Batch) csvTable() ([]string, [][]string) { return batchHeader, [][]string{b.csvRow()} }

func (b *Batches) csvTable() ([]string, [][]string) {
	rows := make([][]string, len(b.Items))
	for i := range b.Items {
		rows[i] = b.Items[i].csvRow()
	}
	return batchHeader, rows
}

type legacyScores []LegacyScore

func (l legacyScores) csvTable() ([]string, [][]string) {
	rows := make([][]string, len(l))
	for i, s := range l {
		rows[i] = []string{s.BlockProducerKey, s.Score, s.ScorePercent}
	}
	return []string{"block_producer_key", "score", "score_percent"}, rows
}

func (e legacyError) csvTable() ([]string, [][]string) {
	return []string{"Error", "Error_message"}, [][]string{{e.Error, e.ErrorMessage}}
}

func (e legacyParamError) csvTable() ([]string, [][]string) {
	return []string{"error", "error_message"}, [][]string{{e.Error, e.ErrorMessage}}
}

func (p *ProducerBatches) csvTable() ([]string, [][]string) {
	rows := make([][]string, len(p.Batches))
	for i, b := range p.Batches {
		classes := make([]string, 0, len(b.InvalidByClass))
		for c, n := range b.InvalidByClass {
			classes = append(classes, c+"="+strconv.Itoa(n))
		}
		slices.Sort(classes)
		rows[i] = []string{strconv.FormatInt(b.BotLogID, 10), fmtTime(b.WindowStart), fmtTime(b.WindowEnd), strconv.FormatBool(b.Point),
			b.Reason, strconv.Itoa(b.Submissions), strconv.Itoa(b.Valid), strconv.Itoa(b.Unverified), strings.Join(classes, " "),
			strings.Join(b.StateHashes, " "), strconv.FormatBool(b.Derived)}
	}
	return []string{"bot_log_id", "window_start", "window_end", "point", "reason", "submissions", "valid", "unverified",
		"invalid_by_class", "state_hashes", "derived"}, rows
}
