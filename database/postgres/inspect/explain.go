// Package inspect answers operators' questions from the coordinator's
// database, reading only (it works with the read-only user): why a producer
// did or did not get a point in each batch (Explain) and how the
// coordinator is doing (Status).
package inspect

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// Querier is a database connection or pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrUnknownProducer is returned by Explain for a key the database has never
// seen (no submission, no node, no evidence).
var ErrUnknownProducer = errors.New("unknown block producer key")

// Explanation is the answer of `coordinator explain`; its JSON encoding is a
// stable contract (fields may be added, never changed).
type Explanation struct {
	Producer string        `json:"producer"`
	From     time.Time     `json:"from"`
	To       time.Time     `json:"to"`
	Batches  []BatchReport `json:"batches"`
	Summary  Summary       `json:"summary"`
}

// BatchReport is one batch of an Explanation.
type BatchReport struct {
	BotLogID       int64          `json:"bot_log_id"`
	WindowStart    time.Time      `json:"window_start"`
	WindowEnd      time.Time      `json:"window_end"`
	Point          bool           `json:"point"`
	Reason         string         `json:"reason"`
	Submissions    int            `json:"submissions"`
	Valid          int            `json:"valid"`
	InvalidByClass map[string]int `json:"invalid_by_class"`
	StateHashes    []string       `json:"state_hashes"`
	// Extra fields.
	Unverified int `json:"unverified"`
	// ErrorExamples: per class, a raw validation_error of the batch.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// Derived is true for a batch scored before evidence was recorded: the
	// reason was derived from points_summary and the submissions table
	// (unknown when its submissions were cleaned up).
	Derived bool `json:"derived"`
}

// Summary sums up an Explanation.
type Summary struct {
	Batches  int            `json:"batches"`
	Points   int            `json:"points"`
	Missed   int            `json:"missed"`
	ByReason map[string]int `json:"by_reason"`
	// Derived counts the batches whose reason was derived (extra field).
	Derived int `json:"derived"`
}

// Explain reports, for every batch whose window end is in [from, to), the
// producer's outcome. Batches scored with evidence read it; older ones are
// derived from points_summary and the submissions table, and are "unknown"
// when their submissions are gone. Only committed batches count (not the
// starting row that init-database writes).
func Explain(ctx context.Context, db Querier, key string, from, to time.Time) (*Explanation, error) {
	from, to = from.UTC(), to.UTC()
	if !from.Before(to) {
		return nil, fmt.Errorf("empty range: from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	var known bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM evidence_producers WHERE block_producer_key = $1)
		OR EXISTS (SELECT 1 FROM nodes WHERE block_producer_key = $1)
		OR EXISTS (SELECT 1 FROM submissions WHERE submitter = $1)`, key).Scan(&known); err != nil {
		return nil, fmt.Errorf("looking up the producer: %w", err)
	}
	if !known {
		return nil, fmt.Errorf("%w %q: no submission, node or evidence row names it", ErrUnknownProducer, key)
	}

	rows, err := db.Query(ctx, `
		WITH producer AS (SELECT id FROM evidence_producers WHERE block_producer_key = $1),
		     node AS (SELECT id FROM nodes WHERE block_producer_key = $1)
		SELECT b.id, b.batch_start_epoch, b.batch_end_epoch,
			EXISTS (SELECT 1 FROM points_summary ps WHERE ps.bot_log_id = b.id AND ps.node_id IN (SELECT id FROM node)),
			s.bot_log_id IS NOT NULL,
			e.outcome::text, e.submissions, e.valid, e.unverified, e.invalid_by_class, e.details,
			s.bot_log_id IS NULL AND EXISTS (SELECT 1 FROM submissions x
				WHERE x.submitted_at >= to_timestamp(b.batch_start_epoch) AT TIME ZONE 'UTC'
				  AND x.submitted_at < to_timestamp(b.batch_end_epoch) AT TIME ZONE 'UTC')
		FROM bot_logs b
		LEFT JOIN batch_evidence_summary s ON s.bot_log_id = b.id
		LEFT JOIN batch_evidence e ON e.bot_log_id = b.id AND e.producer_id = (SELECT id FROM producer)
		WHERE b.files_processed > -1 AND b.batch_end_epoch >= $2 AND b.batch_end_epoch < $3
		ORDER BY b.batch_end_epoch, b.id`, key, from.Unix(), to.Unix())
	if err != nil {
		return nil, fmt.Errorf("reading the batches: %w", err)
	}
	type details struct {
		ErrorExamples map[string]string `json:"error_examples"`
		StateHashes   []string          `json:"state_hashes"`
	}
	var batches []BatchReport
	var legacyWithSubs []int // indexes of derived batches whose window still has submissions
	for rows.Next() {
		var b BatchReport
		var start, end int64
		var hasEvidence, windowKept bool
		var outcome *string
		var subs, valid, unverified *int32
		var byClass map[string]int
		var det *details
		if err := rows.Scan(&b.BotLogID, &start, &end, &b.Point, &hasEvidence, &outcome, &subs, &valid, &unverified,
			&byClass, &det, &windowKept); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the batches: %w", err)
		}
		b.WindowStart, b.WindowEnd = time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC()
		b.InvalidByClass, b.StateHashes = map[string]int{}, []string{}
		switch {
		case hasEvidence && outcome != nil:
			b.Reason = *outcome
			b.Submissions, b.Valid, b.Unverified = int(*subs), int(*valid), int(*unverified)
			if byClass != nil {
				b.InvalidByClass = byClass
			}
			if det != nil {
				b.ErrorExamples = det.ErrorExamples
				if det.StateHashes != nil {
					b.StateHashes = det.StateHashes
				}
			}
		case hasEvidence:
			b.Reason = coordinator.OutcomeNoSubmission
		default:
			b.Derived = true
			b.Reason = coordinator.OutcomeUnknown
			if windowKept {
				legacyWithSubs = append(legacyWithSubs, len(batches))
			}
		}
		batches = append(batches, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the batches: %w", err)
	}

	// The producer's own submissions over the range: the hashes named, and
	// the outcome of batches scored before evidence existed.
	if len(batches) > 0 {
		subs, err := submissions(ctx, db, key, batches[0].WindowStart, batches[len(batches)-1].WindowEnd)
		if err != nil {
			return nil, err
		}
		legacy := map[int]bool{}
		for _, i := range legacyWithSubs {
			legacy[i] = true
		}
		for i := range batches {
			b := &batches[i]
			in := windowOf(subs, b.WindowStart, b.WindowEnd)
			if b.Reason == coordinator.OutcomePoint || (b.Derived && legacy[i]) {
				hashes := map[string]bool{}
				for k := range in {
					if coordinator.SubmissionClass(&in[k]) == "" {
						hashes[*in[k].StateHash] = true
					}
				}
				b.StateHashes = append([]string{}, slices.Sorted(maps.Keys(hashes))...)
			}
			if b.Derived && legacy[i] {
				derive(b, in)
			}
			if b.Derived && b.Point {
				// points_summary says so, whatever is left of the submissions.
				b.Reason = coordinator.OutcomePoint
			}
		}
	}

	ex := &Explanation{Producer: key, From: from, To: to, Batches: batches,
		Summary: Summary{ByReason: map[string]int{}}}
	if ex.Batches == nil {
		ex.Batches = []BatchReport{}
	}
	for _, b := range batches {
		ex.Summary.Batches++
		if b.Point {
			ex.Summary.Points++
		}
		if b.Derived {
			ex.Summary.Derived++
		}
		ex.Summary.ByReason[b.Reason]++
	}
	ex.Summary.Missed = ex.Summary.Batches - ex.Summary.Points
	return ex, nil
}

// derive fills the outcome of a batch scored before evidence existed from
// the producer's submissions still in the submissions table.
func derive(b *BatchReport, in []coordinator.Submission) {
	b.Submissions, b.Valid, b.Unverified = 0, 0, 0
	b.InvalidByClass = map[string]int{}
	for k := range in {
		b.Submissions++
		switch class := coordinator.SubmissionClass(&in[k]); class {
		case "":
			b.Valid++
		case coordinator.OutcomeUnverified:
			b.Unverified++
		default:
			b.InvalidByClass[class]++
			if t := in[k].ValidationError; t != nil && *t != "" { // in is sorted by time: the latest wins
				if b.ErrorExamples == nil {
					b.ErrorExamples = map[string]string{}
				}
				text := *t
				if len(text) > coordinator.MaxErrorText { // as the stored examples
					text = strings.ToValidUTF8(text[:coordinator.MaxErrorText], "")
				}
				b.ErrorExamples[class] = text
			}
		}
	}
	switch {
	case b.Point:
		b.Reason = coordinator.OutcomePoint
	case b.Submissions == 0:
		b.Reason = coordinator.OutcomeNoSubmission
	case b.Valid > 0:
		b.Reason = coordinator.OutcomeOffChain
	case b.Unverified > 0:
		b.Reason = coordinator.OutcomeUnverified
	default:
		b.Reason = coordinator.OutcomeInvalid
	}
}

// submissions reads the producer's submissions in [from, to), sorted by
// submitted_at (the (submitter, submitted_at) index).
func submissions(ctx context.Context, db Querier, key string, from, to time.Time) ([]coordinator.Submission, error) {
	rows, err := db.Query(ctx, `SELECT submitted_at, state_hash, validation_error, verified FROM submissions
		WHERE submitter = $1 AND submitted_at >= $2 AND submitted_at < $3 ORDER BY submitted_at`, key, from, to)
	if err != nil {
		return nil, fmt.Errorf("reading the producer's submissions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (coordinator.Submission, error) {
		s := coordinator.Submission{Submitter: key}
		err := row.Scan(&s.SubmittedAt, &s.StateHash, &s.ValidationError, &s.Verified)
		s.SubmittedAt = s.SubmittedAt.UTC()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the producer's submissions: %w", err)
	}
	return out, nil
}

// windowOf returns the submissions (sorted by time) in [start, end).
func windowOf(subs []coordinator.Submission, start, end time.Time) []coordinator.Submission {
	lo, _ := slices.BinarySearchFunc(subs, start, func(s coordinator.Submission, t time.Time) int { return s.SubmittedAt.Compare(t) })
	hi, _ := slices.BinarySearchFunc(subs, end, func(s coordinator.Submission, t time.Time) int { return s.SubmittedAt.Compare(t) })
	return subs[lo:hi]
}
