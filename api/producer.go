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
	"github.com/delegation-program/uptime-coordinator/coordinator"
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

	node  int64  // its nodes id
	batch Latest // the latest batch it is as of
}

// Batch is the latest batch the answer is as of (its ETag).
func (p *Producer) Batch() Latest { return p.batch }

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

// producerRow is the producer's nodes row (the first, by id), whether its
// key is held by more than one, and its evidence_producers id.
type producerRow struct {
	node       int64
	duplicated bool
	evidence   int32
	hasEv      bool
}

// Producer reads one producer's scores over the standard windows, its first
// and last batch with a point and the batches it missed in the last 24
// hours, as of the latest batch. It reads the latest batch (one indexed
// row); the rest comes from memory: the producer's nodes row and
// application status as of the latest batch (as the leaderboards), the
// point set and the last day's evidence; from the database only the
// reasons of batches scored without evidence and the missed batches of a
// key held by two nodes rows (explain counts the points of either).
func (r *Reader) Producer(ctx context.Context, key string) (*Producer, error) {
	p := &Producer{Producer: key, Missed24h: map[string]int{}, MissedBatches: []MissedBatch{}, Scores: []WindowScore{}}
	l, err := r.Latest(ctx)
	if err != nil {
		return nil, err
	}
	snap, err := r.snapshotOf(ctx, l)
	if err != nil {
		return nil, err
	}
	ref, ok := snap.byKey[key]
	if !ok {
		return nil, fmt.Errorf("producer %s: %w", key, ErrNotFound)
	}
	n := snap.nodes[ref.index]
	row := producerRow{node: n.id, duplicated: ref.count > 1}
	p.ApplicationStatus, p.node, p.batch = n.status, n.id, snap.batch
	l = snap.batch
	if l.ID == 0 {
		return p, nil
	}
	m, err := r.followedModel(ctx, l)
	if err != nil {
		return nil, err
	}
	row.evidence, row.hasEv = m.evidence.Producer(key)
	set := m.points
	p.AsOf = &l.End
	end := l.End.Unix()
	for _, w := range StandardWindows {
		d, _ := ParseWindow(w)
		m := set.Window(end-int64(d)*day, end)
		points := set.Points(row.node, m)
		p.Scores = append(p.Scores, WindowScore{Window: w, Points: points, Surveys: m.Surveys(), ScorePercent: percent(points, m.Surveys())})
		if d == 1 {
			p.Batches24h = m.Surveys()
		}
	}
	if b, ok := set.First(row.node); ok && b.End <= end {
		p.FirstPoint = batchRef(b)
	}
	if b, ok := set.Last(row.node, end); ok {
		p.LastPoint = batchRef(b)
	}
	if p.MissedBatches, ok = missedInMemory(m, row, end-day, end); !ok {
		err := r.read(ctx, func(tx pgx.Tx) error {
			var err error
			p.MissedBatches, err = missed(ctx, tx, key, l.End.Add(-24*time.Hour), l.End)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	for _, m := range p.MissedBatches {
		p.Missed24h[m.Reason]++
	}
	return p, nil
}

// missedInMemory lists the surveys in [from, to] without a point for the
// producer, with explain's reasons, from memory; ok false when memory
// cannot say (a batch scored without evidence or not held, a key held by
// two nodes rows).
func missedInMemory(m *model, p producerRow, from, to int64) ([]MissedBatch, bool) {
	if p.duplicated {
		return nil, false
	}
	out := []MissedBatch{}
	batches := m.points.Batches()
	i, _ := slices.BinarySearchFunc(batches, from, func(b pointset.Batch, end int64) int { return cmp.Compare(b.End, end) })
	for _, b := range batches[i:] {
		if b.Start < from || b.End > to || m.points.Point(p.node, b.ID) {
			continue
		}
		reason, ok := m.evidence.Outcome(b.ID, p.evidence, p.hasEv)
		if !ok {
			return nil, false
		}
		if reason == "" {
			reason = coordinator.OutcomeNoSubmission
		}
		out = append(out, MissedBatch{BatchRef: *batchRef(b), Reason: reason})
	}
	return out, true
}

func batchRef(b pointset.Batch) *BatchRef {
	return &BatchRef{ID: b.ID, Start: time.Unix(b.Start, 0).UTC(), End: time.Unix(b.End, 0).UTC()}
}

// percent is the coordinator's trunc(points * 100 / surveys, 2).
func percent(points, surveys int) *float64 {
	if surveys == 0 {
		return nil
	}
	v := truncPercent(points, surveys)
	return &v
}

// truncPercent is trunc(points * 100 / surveys, 2), surveys > 0.
func truncPercent(points, surveys int) float64 { return float64(points*10000/surveys) / 100 }

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

// HistorySample returns the producer's score_history at the chart's
// batches (see Reader.ChartStep) of the UptimeDays days up to p's batch,
// from memory.
func (r *Reader) HistorySample(ctx context.Context, p *Producer) ([]HistoryPoint, error) {
	if p.AsOf == nil {
		return nil, nil
	}
	m, err := r.followedModel(ctx, p.batch)
	if err != nil {
		return nil, err
	}
	var out []HistoryPoint
	for _, h := range m.history.Points(p.node, p.AsOf.Add(-time.Duration(max(r.UptimeDays, 1))*24*time.Hour), *p.AsOf) {
		out = append(out, HistoryPoint{ScoreAt: h.At, Score: h.Score, ScorePercent: h.ScorePercent})
	}
	return out, nil
}
