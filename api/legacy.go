package api

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LegacyScore is one element of the existing leaderboard API's
// /uptimescore/ response: every value a string, as that API printed them.
type LegacyScore struct {
	BlockProducerKey string `json:"block_producer_key"`
	Score            string `json:"score"`
	ScorePercent     string `json:"score_percent"`
}

// LegacyScores answers /uptimescore/{pubkey}/snarkwork/{scoreAt}/ as the
// existing leaderboard API does. key "" means every producer; at nil means
// current. Current for everyone: nodes with application_status true and a
// score, best first. Current for one: the producer's latest score_history
// row. At a time: the score_history rows of the latest score_at strictly
// before it (everyone, best first, or the one producer).
func (r *Reader) LegacyScores(ctx context.Context, key string, at *time.Time) ([]LegacyScore, error) {
	var out []LegacyScore
	err := r.read(ctx, func(tx pgx.Tx) error {
		var rows pgx.Rows
		var err error
		// NULLs print as None, as Python's str(None) did.
		const cols = `coalesce(n.block_producer_key, 'None'), coalesce(s.score::text, 'None'), coalesce(s.score_percent::text, 'None')`
		switch {
		case key == "" && at == nil:
			rows, err = tx.Query(ctx, `SELECT coalesce(n.block_producer_key, 'None'), n.score::text, n.score_percent::text
				FROM nodes n WHERE n.application_status = true AND n.score IS NOT NULL
				ORDER BY n.score DESC, n.block_producer_key, n.id`)
		case at == nil:
			rows, err = tx.Query(ctx, `SELECT `+cols+` FROM score_history s JOIN nodes n ON n.id = s.node_id
				WHERE n.block_producer_key = $1 ORDER BY s.score_at DESC LIMIT 1`, key)
		case key == "":
			rows, err = tx.Query(ctx, `WITH t AS (SELECT score_at FROM score_history WHERE score_at < $1 ORDER BY score_at DESC LIMIT 1)
				SELECT `+cols+` FROM t JOIN score_history s ON s.score_at = t.score_at JOIN nodes n ON n.id = s.node_id
				ORDER BY s.score DESC NULLS LAST, n.block_producer_key, n.id`, at.UTC())
		default:
			rows, err = tx.Query(ctx, `WITH t AS (SELECT score_at FROM score_history WHERE score_at < $1 ORDER BY score_at DESC LIMIT 1)
				SELECT `+cols+` FROM t JOIN score_history s ON s.score_at = t.score_at
				JOIN nodes n ON n.id = s.node_id AND n.block_producer_key = $2`, at.UTC(), key)
		}
		if err != nil {
			return fmt.Errorf("reading uptime scores: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (LegacyScore, error) {
			var s LegacyScore
			err := row.Scan(&s.BlockProducerKey, &s.Score, &s.ScorePercent)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("reading uptime scores: %w", err)
		}
		return nil
	})
	return out, err
}
