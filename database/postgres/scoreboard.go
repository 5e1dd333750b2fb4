package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

const day = 24 * 60 * 60

// updateScores brings nodes.score and nodes.score_percent to the window
// [w.End - days, w.End] and appends score_history, with the original's
// formula: surveys = the batches (files_processed > -1) inside the window,
// score = a node's points_summary rows in those batches, score_percent =
// trunc(score * 100 / surveys, 2). Unlike the original, a node whose points
// all left the window gets 0 rather than keeping its old score.
//
// When the scoreboard state says the scores are exact for the window ending
// at w.Start (the previous batch), only the batches entering and leaving the
// window are read; otherwise the whole window is recomputed.
//
// The step after it, appendScoreHistory, appends score_history and records
// the scoreboard state.
func (b *batchTx) updateScores(ctx context.Context) error {
	tx, w, days := b.tx, b.rec.Window, b.rec.UptimeDays
	sb := &b.out.Scoreboard
	end, start := w.End.Unix(), w.End.Unix()-int64(days)*day
	prevEnd, prevStart := w.Start.Unix(), w.Start.Unix()-int64(days)*day

	var stateEnd int64
	var stateDays int
	err := tx.QueryRow(ctx, `SELECT window_end_epoch, uptime_days FROM coordinator_scoreboard FOR UPDATE`).Scan(&stateEnd, &stateDays)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("reading the scoreboard state: %w", err)
	default:
		sb.Incremental = stateEnd == prevEnd && stateDays == days && prevEnd < end
	}

	if err := tx.QueryRow(ctx, `SELECT count(*) FROM bot_logs
		WHERE files_processed > -1 AND batch_start_epoch >= $1 AND batch_end_epoch <= $2`, start, end).Scan(&sb.Surveys); err != nil {
		return fmt.Errorf("counting the surveys of the scoring window: %w", err)
	}

	// counts yields, per node, the change of its score (incremental) or its
	// score (full); base is the score it is added to.
	var counts, base string
	var args []any
	if sb.Incremental {
		counts = `SELECT ps.node_id, sum(b.d)::int AS n FROM points_summary ps JOIN (
				SELECT id, 1 AS d FROM bot_logs WHERE batch_start_epoch >= $2 AND batch_end_epoch > $3 AND batch_end_epoch <= $4
				UNION ALL
				SELECT id, -1 FROM bot_logs WHERE batch_start_epoch >= $5 AND batch_start_epoch < $2 AND batch_end_epoch <= $3
			) b ON b.id = ps.bot_log_id GROUP BY ps.node_id`
		base = "coalesce(n.score, 0)"
		args = []any{sb.Surveys, start, prevEnd, end, prevStart}
	} else {
		counts = `SELECT ps.node_id, count(*)::int AS n FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
			WHERE b.batch_start_epoch >= $2 AND b.batch_end_epoch <= $3 GROUP BY ps.node_id`
		base = "0"
		args = []any{sb.Surveys, start, end}
	}
	tag, err := tx.Exec(ctx, `WITH counts AS (`+counts+`),
		target AS (
			SELECT n.id, `+base+` + coalesce(c.n, 0) AS score FROM nodes n LEFT JOIN counts c ON c.node_id = n.id
			WHERE n.score IS NOT NULL OR c.node_id IS NOT NULL
		), scored AS (
			SELECT id, score, trunc(score::numeric * 100 / NULLIF($1::bigint, 0), 2) AS score_percent FROM target
		)
		UPDATE nodes n SET score = s.score, score_percent = s.score_percent FROM scored s
		WHERE n.id = s.id AND (n.score IS DISTINCT FROM s.score OR n.score_percent IS DISTINCT FROM s.score_percent)`, args...)
	if err != nil {
		return fmt.Errorf("updating scores: %w", err)
	}
	sb.Changed = tag.RowsAffected()
	return nil
}

// appendScoreHistory appends the scores of the window ending at the batch's
// end to score_history (replacing the rows of a re-run batch), records the
// scoreboard state and leaves the bulk path. With bulk (replica mode, see
// CanBulkWritePoints), the nodes the history references are locked FOR KEY
// SHARE by the same statement, as the skipped foreign-key checks would have.
func (b *batchTx) appendScoreHistory(ctx context.Context) error {
	tx, w, days := b.tx, b.rec.Window, b.rec.UptimeDays
	lock := ""
	if b.bulk {
		lock = "FOR KEY SHARE"
	}
	// A re-run of a batch replaces its history rather than failing on the
	// unique (node_id, score_at) index; a plain INSERT after the DELETE
	// avoids the cost of speculative insertion on every row.
	if _, err := tx.Exec(ctx, `DELETE FROM score_history WHERE score_at = $1`, w.End.UTC()); err != nil {
		return fmt.Errorf("replacing score history: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO score_history (node_id, score_at, score, score_percent)
		SELECT id, $1, score, score_percent FROM nodes WHERE score IS NOT NULL `+lock, w.End.UTC())
	if err != nil {
		return fmt.Errorf("inserting score history: %w", err)
	}
	b.out.Scoreboard.Scored = tag.RowsAffected()

	if _, err := tx.Exec(ctx, `INSERT INTO coordinator_scoreboard (window_end_epoch, uptime_days) VALUES ($1, $2)
		ON CONFLICT (singleton) DO UPDATE SET window_end_epoch = EXCLUDED.window_end_epoch, uptime_days = EXCLUDED.uptime_days`, w.End.Unix(), days); err != nil {
		return fmt.Errorf("recording the scoreboard state: %w", err)
	}
	if b.bulk {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = origin`); err != nil {
			return fmt.Errorf("leaving the bulk path: %w", err)
		}
	}
	return nil
}
