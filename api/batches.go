package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Batch summarises one bot_logs row.
type Batch struct {
	BatchRef
	ValidSubmissions int      `json:"valid_submissions" doc:"bot_logs.files_processed: valid submissions in the batch's window"`
	ProducersPointed int      `json:"producers_with_point" doc:"Producers that earned a point"`
	ShortlistSize    int      `json:"shortlisted_hashes" doc:"State hashes kept on the consensus chain (bot_logs_statehash rows)"`
	ConsensusHashes  []string `json:"consensus_hashes" doc:"State hashes named by at least 5% of the producers (weight 0)"`
	DurationSeconds  *float64 `json:"duration_seconds" doc:"bot_logs.processing_time: seconds the batch took"`
	// Evidence and ErrorClasses exist for batches scored with evidence.
	Evidence     *BatchEvidence `json:"evidence" doc:"Submission and producer counts of the batch (null for a batch scored before evidence was recorded)"`
	ErrorClasses []ErrorClass   `json:"error_classes" doc:"Failed submissions by verifier error class, most frequent first"`
}

// BatchEvidence is a batch's batch_evidence_summary row.
type BatchEvidence struct {
	Submissions         int `json:"submissions"`
	Valid               int `json:"valid"`
	Unverified          int `json:"unverified"`
	Invalid             int `json:"invalid"`
	Producers           int `json:"producers" doc:"Distinct submitters"`
	PointProducers      int `json:"point_producers"`
	OffChainProducers   int `json:"off_chain_producers"`
	InvalidProducers    int `json:"invalid_producers"`
	UnverifiedProducers int `json:"unverified_producers"`
}

// ErrorClass is one verifier error class of a batch.
type ErrorClass struct {
	Class       string  `json:"class"`
	Submissions int     `json:"submissions"`
	Producers   int     `json:"producers"`
	Share       float64 `json:"share" doc:"Share of the batch's submissions, 0..1"`
}

const batchColumns = `b.id, b.batch_start_epoch, b.batch_end_epoch, coalesce(b.files_processed, 0), b.processing_time,
	(SELECT count(*) FROM points_summary ps WHERE ps.bot_log_id = b.id)::int,
	(SELECT count(*) FROM bot_logs_statehash x WHERE x.bot_log_id = b.id)::int,
	coalesce((SELECT array_agg(s.value ORDER BY s.value) FROM bot_logs_statehash x JOIN statehash s ON s.id = x.statehash_id
		WHERE x.bot_log_id = b.id AND x.weight = 0), '{}'),
	(SELECT row_to_json(s) FROM batch_evidence_summary s WHERE s.bot_log_id = b.id),
	coalesce((SELECT json_agg(json_build_object('class', c.class, 'submissions', c.submissions, 'producers', c.producers)
		ORDER BY c.submissions DESC, c.class) FROM batch_error_classes c WHERE c.bot_log_id = b.id), '[]')`

func scanBatch(row pgx.CollectableRow) (Batch, error) {
	var b Batch
	var start, end int64
	err := row.Scan(&b.ID, &start, &end, &b.ValidSubmissions, &b.DurationSeconds, &b.ProducersPointed, &b.ShortlistSize, &b.ConsensusHashes,
		&b.Evidence, &b.ErrorClasses)
	b.Start, b.End = time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC()
	for i := range b.ErrorClasses {
		if b.Evidence != nil && b.Evidence.Submissions > 0 {
			b.ErrorClasses[i].Share = float64(b.ErrorClasses[i].Submissions) / float64(b.Evidence.Submissions)
		}
	}
	return b, err
}

// Batches lists the batches (files_processed > -1) ending in [from, to],
// newest first, at most limit.
func (r *Reader) Batches(ctx context.Context, from, to time.Time, limit int) ([]Batch, error) {
	var out []Batch
	err := r.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+batchColumns+` FROM bot_logs b
			WHERE b.files_processed > -1 AND b.batch_end_epoch >= $1 AND b.batch_end_epoch <= $2
			ORDER BY b.batch_end_epoch DESC, b.id DESC LIMIT $3`, from.Unix(), to.Unix(), limit)
		if err != nil {
			return fmt.Errorf("reading batches: %w", err)
		}
		if out, err = pgx.CollectRows(rows, scanBatch); err != nil {
			return fmt.Errorf("reading batches: %w", err)
		}
		return nil
	})
	return out, err
}

// Batch reads one batch by its bot_logs id.
func (r *Reader) Batch(ctx context.Context, id int64) (*Batch, error) {
	var out []Batch
	err := r.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+batchColumns+` FROM bot_logs b WHERE b.id = $1 AND b.files_processed > -1`, id)
		if err != nil {
			return fmt.Errorf("reading batch %d: %w", id, err)
		}
		if out, err = pgx.CollectRows(rows, scanBatch); err != nil {
			return fmt.Errorf("reading batch %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("batch %d: %w", id, ErrNotFound)
	}
	return &out[0], nil
}

// BatchesAfter returns the batches with an id above after, oldest first
// (what a stream client missed), at most limit.
func (r *Reader) BatchesAfter(ctx context.Context, after int64, limit int) ([]Batch, error) {
	var out []Batch
	err := r.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+batchColumns+` FROM bot_logs b
			WHERE b.id > $1 AND b.files_processed > -1 ORDER BY b.id LIMIT $2`, after, limit)
		if err != nil {
			return fmt.Errorf("reading batches after %d: %w", after, err)
		}
		if out, err = pgx.CollectRows(rows, scanBatch); err != nil {
			return fmt.Errorf("reading batches after %d: %w", after, err)
		}
		return nil
	})
	return out, err
}

// Outcome is one producer's result in a batch.
type Outcome struct {
	Producer string `json:"producer"`
	Point    bool   `json:"point" doc:"The producer earned a point in the batch"`
	Known    bool   `json:"known" doc:"The producer exists in nodes"`
}

// Outcomes says for each key whether it earned a point in the batch.
func (r *Reader) Outcomes(ctx context.Context, botLogID int64, keys []string) ([]Outcome, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rows, err := r.Pool.Query(ctx, `SELECT k.key, n.id IS NOT NULL,
			EXISTS (SELECT 1 FROM points_summary ps WHERE ps.bot_log_id = $1 AND ps.node_id = n.id)
		FROM unnest($2::text[]) WITH ORDINALITY AS k(key, i)
		LEFT JOIN LATERAL (SELECT id FROM nodes WHERE block_producer_key = k.key ORDER BY id LIMIT 1) n ON true
		ORDER BY k.i`, botLogID, keys)
	if err != nil {
		return nil, fmt.Errorf("reading outcomes of batch %d: %w", botLogID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Outcome, error) {
		var o Outcome
		err := row.Scan(&o.Producer, &o.Known, &o.Point)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading outcomes of batch %d: %w", botLogID, err)
	}
	return out, nil
}

// IsNotFound reports whether err means an unknown producer or batch.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
