package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/api/pointset"
	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
)

// WindowScore is a producer's score over one window.
type WindowScore struct {
	Window       string   `json:"window" doc:"24h, 7d, 30d or 90d"`
	Points       int      `json:"points" doc:"Batches of the window in which the producer earned a point"`
	Surveys      int      `json:"surveys" doc:"Batches (surveys) in the window"`
	ScorePercent *float64 `json:"score_percent" doc:"trunc(points * 100 / surveys, 2); null when the window has no survey"`
}

// MissedBatch is a batch of the last 24 hours without a point for the
// producer, with the reason.
type MissedBatch struct {
	BatchRef
	Reason string `json:"reason" enum:"off_chain,invalid,unverified,no_submission,unknown" doc:"As coordinator explain: off_chain (valid submissions, none on the consensus chain), invalid (every submission failed verification), unverified (the verifier never marked them), no_submission, unknown (scored before evidence was recorded and its submissions are cleaned up)"`
}

// Producer is what the producer endpoint and page show.
type Producer struct {
	Producer          string         `json:"producer"`
	AsOf              *time.Time     `json:"as_of" doc:"End of the latest batch"`
	ApplicationStatus *bool          `json:"application_status"`
	Scores            []WindowScore  `json:"scores"`
	FirstPoint        *BatchRef      `json:"first_point_batch" doc:"The first batch in which the producer earned a point"`
	LastPoint         *BatchRef      `json:"last_point_batch" doc:"The latest batch in which the producer earned a point"`
	Batches24h        int            `json:"batches_24h" doc:"Batches in the last 24 hours"`
	Missed24h         map[string]int `json:"missed_24h_by_reason" doc:"Batches of the last 24 hours without a point, by reason"`
	MissedBatches     []MissedBatch  `json:"missed_24h" doc:"Those batches, oldest first"`
}

// nodeID returns the producer's nodes row (the first one, as the coordinator
// uses, when a database the original wrote holds the key twice).
func nodeID(ctx context.Context, q queryer, key string) (int64, *bool, error) {
	var id int64
	var status *bool
	err := q.QueryRow(ctx, `SELECT id, application_status FROM nodes WHERE block_producer_key = $1 ORDER BY id LIMIT 1`, key).Scan(&id, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, fmt.Errorf("producer %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading producer %s: %w", key, err)
	}
	return id, status, nil
}

// Producer reads one producer's scores over the standard windows, its first
// and last batch with a point and the batches it missed in the last 24
// hours, as of the latest batch. The scores and batches with a point come
// from the point set in memory; the producer's row and the missed batches'
// reasons from the database.
func (r *Reader) Producer(ctx context.Context, key string) (*Producer, error) {
	p := &Producer{Producer: key, Missed24h: map[string]int{}, MissedBatches: []MissedBatch{}, Scores: []WindowScore{}}
	var id int64
	var l Latest
	err := r.read(ctx, func(tx pgx.Tx) error {
		var err error
		if id, p.ApplicationStatus, err = nodeID(ctx, tx, key); err != nil {
			return err
		}
		if l, err = latest(ctx, tx); err != nil || l.ID == 0 {
			return err
		}
		p.MissedBatches, err = missed(ctx, tx, key, l.End.Add(-24*time.Hour), l.End)
		return err
	})
	if err != nil {
		return nil, err
	}
	if l.ID == 0 {
		return p, nil
	}
	set, err := r.pointSet(ctx, l)
	if err != nil {
		return nil, err
	}
	p.AsOf = &l.End
	end := l.End.Unix()
	for _, w := range StandardWindows {
		d, _ := ParseWindow(w)
		m := set.Window(end-int64(d)*day, end)
		points := set.Points(id, m)
		p.Scores = append(p.Scores, WindowScore{Window: w, Points: points, Surveys: m.Surveys(), ScorePercent: percent(points, m.Surveys())})
		if d == 1 {
			p.Batches24h = m.Surveys()
		}
	}
	if b, ok := set.First(id); ok && b.End <= end {
		p.FirstPoint = batchRef(b)
	}
	if b, ok := set.Last(id, end); ok {
		p.LastPoint = batchRef(b)
	}
	for _, m := range p.MissedBatches {
		p.Missed24h[m.Reason]++
	}
	return p, nil
}

func batchRef(b pointset.Batch) *BatchRef {
	return &BatchRef{ID: b.ID, Start: time.Unix(b.Start, 0).UTC(), End: time.Unix(b.End, 0).UTC()}
}

// percent is the coordinator's trunc(points * 100 / surveys, 2).
func percent(points, surveys int) *float64 {
	if surveys == 0 {
		return nil
	}
	h := points * 10000 / surveys
	v := float64(h) / 100
	return &v
}

// missed lists the surveys in [from, to] without a point for the producer,
// with the reason coordinator explain gives (the batch evidence, or derived
// for batches scored before evidence was recorded).
func missed(ctx context.Context, tx pgx.Tx, key string, from, to time.Time) ([]MissedBatch, error) {
	// Explain takes batches by their end in [from, to); a survey of the
	// window also starts inside it.
	ex, err := inspect.Explain(ctx, tx, key, from, to.Add(time.Second))
	if errors.Is(err, inspect.ErrUnknownProducer) {
		return []MissedBatch{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("explaining the producer's batches: %w", err)
	}
	out := []MissedBatch{}
	for _, b := range ex.Batches {
		if b.Point || b.WindowStart.Before(from) {
			continue
		}
		out = append(out, MissedBatch{BatchRef: BatchRef{ID: b.BotLogID, Start: b.WindowStart, End: b.WindowEnd}, Reason: b.Reason})
	}
	return out, nil
}

// HistoryPoint is one score_history row.
type HistoryPoint struct {
	ScoreAt      time.Time `json:"score_at"`
	Score        int       `json:"score"`
	ScorePercent *float64  `json:"score_percent"`
}

// History reads the producer's score_history in [from, to].
func (r *Reader) History(ctx context.Context, key string, from, to time.Time, limit int) ([]HistoryPoint, error) {
	return r.readHistory(ctx, key, func(tx pgx.Tx, node int64) (pgx.Rows, error) {
		return tx.Query(ctx, `SELECT score_at, coalesce(score, 0), score_percent::float8 FROM score_history
			WHERE node_id = $1 AND score_at >= $2 AND score_at <= $3 ORDER BY score_at LIMIT $4`,
			node, from.UTC(), to.UTC(), limit)
	})
}

// readHistory reads the producer's score_history rows that query selects
// (score_at, score, score_percent) for its nodes id.
func (r *Reader) readHistory(ctx context.Context, key string, query func(tx pgx.Tx, node int64) (pgx.Rows, error)) ([]HistoryPoint, error) {
	var out []HistoryPoint
	err := r.read(ctx, func(tx pgx.Tx) error {
		id, _, err := nodeID(ctx, tx, key)
		if err != nil {
			return err
		}
		rows, err := query(tx, id)
		if err != nil {
			return fmt.Errorf("reading score history: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryPoint, error) {
			var h HistoryPoint
			err := row.Scan(&h.ScoreAt, &h.Score, &h.ScorePercent)
			h.ScoreAt = h.ScoreAt.UTC()
			return h, err
		})
		if err != nil {
			return fmt.Errorf("reading score history: %w", err)
		}
		return nil
	})
	return out, err
}

// ProducerBatches is coordinator explain's answer for the producer: the
// batches ending in [from, to) with the producer's outcome in each.
func (r *Reader) ProducerBatches(ctx context.Context, key string, from, to time.Time) (*inspect.Explanation, error) {
	var ex *inspect.Explanation
	err := r.read(ctx, func(tx pgx.Tx) error {
		var err error
		ex, err = inspect.Explain(ctx, tx, key, from, to)
		if errors.Is(err, inspect.ErrUnknownProducer) {
			return fmt.Errorf("producer %s: %w", key, ErrNotFound)
		}
		return err
	})
	return ex, err
}

// HistorySample reads the producer's score_history at the batches ending in
// [from, to], at most limit points: every k-th batch counted back from the
// latest (k chosen so that they fit; the batches are the point set's), by
// one index probe each, for charts.
func (r *Reader) HistorySample(ctx context.Context, key string, from, to time.Time, limit int) ([]HistoryPoint, error) {
	set, err := r.pointSet(ctx, Latest{}) // the set as it is (Producer brought it up to date)
	if err != nil {
		return nil, err
	}
	batches := set.Batches()
	lo, _ := slices.BinarySearchFunc(batches, from.Unix(), func(b pointset.Batch, end int64) int { return cmp.Compare(b.End, end) })
	hi, _ := slices.BinarySearchFunc(batches, to.Unix()+1, func(b pointset.Batch, end int64) int { return cmp.Compare(b.End, end) })
	step := max(1, (hi-lo+limit-1)/max(limit, 1))
	var at []time.Time
	for i := hi - 1; i >= lo; i -= step {
		at = append(at, time.Unix(batches[i].End, 0).UTC())
	}
	return r.readHistory(ctx, key, func(tx pgx.Tx, node int64) (pgx.Rows, error) {
		return tx.Query(ctx, `SELECT score_at, coalesce(score, 0), score_percent::float8 FROM score_history
			WHERE node_id = $1 AND score_at = ANY($2::timestamp[]) ORDER BY score_at`, node, at)
	})
}
