package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// botLog is one bot_logs row, as the scoreboard sees it.
type botLog struct {
	ID         int64
	Start, End int64 // epochs
	Files      int   // files_processed; -1 for the starting row
}

// readBotLogs returns every bot_logs row with a window, ordered by end.
func readBotLogs(ctx context.Context, tx pgx.Tx) ([]botLog, error) {
	rows, err := tx.Query(ctx, `SELECT id, coalesce(batch_start_epoch, batch_end_epoch), batch_end_epoch, coalesce(files_processed, -1)
		FROM bot_logs WHERE batch_end_epoch IS NOT NULL ORDER BY batch_end_epoch, id`)
	if err != nil {
		return nil, fmt.Errorf("reading bot_logs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (botLog, error) {
		var b botLog
		err := row.Scan(&b.ID, &b.Start, &b.End, &b.Files)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading bot_logs: %w", err)
	}
	return out, nil
}

// score is a node's score and score_percent in hundredths (valid false:
// NULL, when the window holds no survey).
type score struct {
	Score   int
	Percent int64
	Valid   bool
}

func newScore(n, surveys int) score {
	if surveys == 0 {
		return score{Score: n}
	}
	// trunc(n * 100 / surveys, 2) in hundredths: n and surveys are >= 0.
	return score{Score: n, Percent: int64(n) * 10000 / int64(surveys), Valid: true}
}

// formatPercent renders hundredths as score_percent::text does ("33.33").
func formatPercent(h int64) string { return fmt.Sprintf("%d.%02d", h/100, h%100) }

func numeric(s score) pgtype.Numeric {
	if !s.Valid {
		return pgtype.Numeric{}
	}
	return pgtype.Numeric{Int: big.NewInt(s.Percent), Exp: -2, Valid: true}
}

// hundredths converts a NUMERIC(5,2) read from the database.
func hundredths(n pgtype.Numeric) (int64, bool) {
	if !n.Valid || n.NaN {
		return 0, false
	}
	v := new(big.Int).Set(n.Int)
	e := n.Exp + 2
	for ; e > 0; e-- {
		v.Mul(v, big.NewInt(10))
	}
	for ; e < 0; e++ {
		v.Quo(v, big.NewInt(10))
	}
	return v.Int64(), true
}

// historyBase says where the scores before the first recomputed batch come
// from.
type historyBase int

const (
	// baseHistory: the scored nodes are those in score_history at the end of
	// the batch before the first one; their counts are recounted from
	// points_summary (rescore: the batches before the range are unchanged).
	baseHistory historyBase = iota
	// baseNodes: the scored nodes are those with a score now; the counts are
	// nodes.score when coordinator_scoreboard says they are exact for the
	// batch before the first one, else recounted (catch-up: the loop's own
	// rules).
	baseNodes
)

// scoreTimeline recomputes the scoreboard for batches[from:] exactly as the
// batch-by-batch path would, batch after batch: a node's score at a batch
// ending at E is its points_summary rows in the batches with start >= E -
// days and end <= E; surveys are those batches with files_processed > -1; a
// node once scored stays scored. overlay holds the points_summary node ids
// of batches whose rows are not (or not yet) in the database; the other
// batches' are read. emit is called for each batch in order with the scores
// of every scored node (the map is reused: copy what must be kept).
func scoreTimeline(ctx context.Context, tx pgx.Tx, logs []botLog, from, days int, base historyBase,
	overlay map[int64][]int64, emit func(b botLog, surveys int, scores map[int64]score) error) (map[int64]score, error) {
	if from <= 0 || from >= len(logs) {
		return nil, fmt.Errorf("scoring timeline: no batch before the first recomputed one")
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Start < logs[i-1].Start {
			return nil, fmt.Errorf("bot_logs %d starts before bot_logs %d but ends after it: the batch windows are out of order", logs[i].ID, logs[i-1].ID)
		}
	}
	span := int64(days) * day
	// window(k) = logs[lo:k+1] with lo the first whose start >= end(k) - span.
	lo := func(k int, from int) int {
		i := from
		for i <= k && logs[i].Start < logs[k].End-span {
			i++
		}
		return i
	}
	prev := from - 1
	prevLo := lo(prev, 0)

	counts := map[int64]int{}
	scored := map[int64]bool{}
	prevEnd := time.Unix(logs[prev].End, 0).UTC()
	switch base {
	case baseHistory:
		rows, err := tx.Query(ctx, `SELECT node_id FROM score_history WHERE score_at = $1`, prevEnd)
		if err != nil {
			return nil, fmt.Errorf("reading the score history before the range: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, fmt.Errorf("reading the score history before the range: %w", err)
		}
		for _, id := range ids {
			scored[id] = true
		}
		if err := countWindow(ctx, tx, logs[prevLo:prev+1], overlay, counts); err != nil {
			return nil, err
		}
	case baseNodes:
		var stateEnd int64
		var stateDays int
		err := tx.QueryRow(ctx, `SELECT window_end_epoch, uptime_days FROM coordinator_scoreboard FOR UPDATE`).Scan(&stateEnd, &stateDays)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("reading the scoreboard state: %w", err)
		}
		exact := err == nil && stateEnd == logs[prev].End && stateDays == days
		rows, err := tx.Query(ctx, `SELECT id, score FROM nodes WHERE score IS NOT NULL`)
		if err != nil {
			return nil, fmt.Errorf("reading scores: %w", err)
		}
		type ns struct {
			id    int64
			score int
		}
		cur, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ns, error) {
			var v ns
			err := row.Scan(&v.id, &v.score)
			return v, err
		})
		if err != nil {
			return nil, fmt.Errorf("reading scores: %w", err)
		}
		for _, v := range cur {
			scored[v.id] = true
			if exact {
				counts[v.id] = v.score
			}
		}
		if !exact {
			if err := countWindow(ctx, tx, logs[prevLo:prev+1], overlay, counts); err != nil {
				return nil, err
			}
		}
	}
	surveys := 0
	for _, b := range logs[prevLo : prev+1] {
		if b.Files > -1 {
			surveys++
		}
	}

	// The points_summary rows of the batches entering and leaving the
	// window on the way, read in one query.
	var need []int64
	curLo := prevLo
	for k := from; k < len(logs); k++ {
		l := lo(k, curLo)
		for _, b := range logs[curLo:l] {
			if _, ok := overlay[b.ID]; !ok {
				need = append(need, b.ID)
			}
		}
		if _, ok := overlay[logs[k].ID]; !ok {
			need = append(need, logs[k].ID)
		}
		curLo = l
	}
	ps, err := readSummaries(ctx, tx, need)
	if err != nil {
		return nil, err
	}
	nodesOf := func(id int64) []int64 {
		if v, ok := overlay[id]; ok {
			return v
		}
		return ps[id]
	}

	scores := map[int64]score{}
	curLo = prevLo
	for k := from; k < len(logs); k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, n := range nodesOf(logs[k].ID) {
			counts[n]++
		}
		if logs[k].Files > -1 {
			surveys++
		}
		l := lo(k, curLo)
		for _, b := range logs[curLo:l] {
			for _, n := range nodesOf(b.ID) {
				counts[n]--
			}
			if b.Files > -1 {
				surveys--
			}
		}
		curLo = l
		for n, c := range counts {
			if c > 0 {
				scored[n] = true
			}
			if c == 0 {
				delete(counts, n)
			}
		}
		clear(scores)
		for n := range scored {
			scores[n] = newScore(counts[n], surveys)
		}
		if emit != nil {
			if err := emit(logs[k], surveys, scores); err != nil {
				return nil, err
			}
		}
	}
	return scores, nil
}

// countWindow adds each node's points_summary rows in logs to counts.
func countWindow(ctx context.Context, tx pgx.Tx, logs []botLog, overlay map[int64][]int64, counts map[int64]int) error {
	var ids []int64
	for _, b := range logs {
		if v, ok := overlay[b.ID]; ok {
			for _, n := range v {
				counts[n]++
			}
			continue
		}
		ids = append(ids, b.ID)
	}
	rows, err := tx.Query(ctx, `SELECT node_id, count(*)::int FROM points_summary WHERE bot_log_id = ANY($1::int8[]) GROUP BY node_id`, ids)
	if err != nil {
		return fmt.Errorf("counting the scoring window: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return fmt.Errorf("counting the scoring window: %w", err)
		}
		counts[id] += n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("counting the scoring window: %w", err)
	}
	return nil
}

// readSummaries reads the points_summary node ids of the given batches.
func readSummaries(ctx context.Context, tx queryer, ids []int64) (map[int64][]int64, error) {
	out := map[int64][]int64{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT bot_log_id, node_id FROM points_summary WHERE bot_log_id = ANY($1::int8[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading points_summary: %w", err)
	}
	defer rows.Close()
	var b, n int64
	if _, err := pgx.ForEachRow(rows, []any{&b, &n}, func() error {
		out[b] = append(out[b], n)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading points_summary: %w", err)
	}
	return out, nil
}

// historyRow is one score_history row.
type historyRow struct {
	Node int64
	At   time.Time
	score
}

// historyDiff compares the score history the timeline emits with the
// database's and collects the rows to delete and to insert.
type historyDiff struct {
	del []historyRow
	ins []historyRow
}

// writeHistory applies d: deletes the changed and extra rows, then COPYs
// the new and changed ones. With bulk they are COPYed in replica mode (see
// CanBulkWritePoints), which skips the per-row foreign-key checks, after the
// nodes they reference are locked FOR KEY SHARE in one statement (what those
// checks would have locked).
func writeHistory(ctx context.Context, tx pgx.Tx, d *historyDiff, bulk bool) error {
	if len(d.del) > 0 {
		nodes, ats := make([]int64, len(d.del)), make([]time.Time, len(d.del))
		for i, r := range d.del {
			nodes[i], ats[i] = r.Node, r.At
		}
		if _, err := tx.Exec(ctx, `DELETE FROM score_history h USING unnest($1::int8[], $2::timestamp[]) AS d(node_id, score_at)
			WHERE h.node_id = d.node_id AND h.score_at = d.score_at`, nodes, ats); err != nil {
			return fmt.Errorf("replacing score history: %w", err)
		}
	}
	if len(d.ins) == 0 {
		return nil
	}
	if bulk {
		var ids []int64
		seen := map[int64]bool{}
		for _, r := range d.ins {
			if !seen[r.Node] {
				seen[r.Node] = true
				ids = append(ids, r.Node)
			}
		}
		slices.Sort(ids)
		if _, err := tx.Exec(ctx, `SELECT FROM nodes WHERE id = ANY($1::int8[]) FOR KEY SHARE`, ids); err != nil {
			return fmt.Errorf("locking nodes: %w", err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return fmt.Errorf("entering the bulk path: %w", err)
		}
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"score_history"}, []string{"node_id", "score_at", "score", "score_percent"},
		pgx.CopyFromSlice(len(d.ins), func(i int) ([]any, error) {
			r := d.ins[i]
			return []any{r.Node, r.At, int32(r.Score), numeric(r.score)}, nil
		}))
	if err != nil {
		return fmt.Errorf("inserting score history: %w", err)
	}
	if int(n) != len(d.ins) {
		return fmt.Errorf("inserting score history: copied %d of %d rows", n, len(d.ins))
	}
	if bulk {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = origin`); err != nil {
			return fmt.Errorf("leaving the bulk path: %w", err)
		}
	}
	return nil
}

// nodeScores reads every node's current score.
func nodeScores(ctx context.Context, tx pgx.Tx) (map[int64]score, error) {
	rows, err := tx.Query(ctx, `SELECT id, score, score_percent FROM nodes`)
	if err != nil {
		return nil, fmt.Errorf("reading scores: %w", err)
	}
	defer rows.Close()
	out := map[int64]score{}
	var id int64
	var sc *int32
	var pct pgtype.Numeric
	if _, err := pgx.ForEachRow(rows, []any{&id, &sc, &pct}, func() error {
		if sc == nil {
			return nil
		}
		s := score{Score: int(*sc)}
		s.Percent, s.Valid = hundredths(pct)
		out[id] = s
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading scores: %w", err)
	}
	return out, nil
}

// writeNodeScores sets nodes.score and score_percent to final (NULL for the
// nodes not in it) where they differ from cur; it returns how many changed.
func writeNodeScores(ctx context.Context, tx pgx.Tx, cur, final map[int64]score) (int64, error) {
	var ids []int64
	var scores []*int32
	var pcts []pgtype.Numeric
	for id, s := range final {
		if c, ok := cur[id]; ok && c == s {
			continue
		}
		v := int32(s.Score)
		ids, scores, pcts = append(ids, id), append(scores, &v), append(pcts, numeric(s))
	}
	for id := range cur {
		if _, ok := final[id]; !ok {
			ids, scores, pcts = append(ids, id), append(scores, nil), append(pcts, pgtype.Numeric{})
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, `UPDATE nodes n SET score = u.score, score_percent = u.pct
		FROM unnest($1::int8[], $2::int4[], $3::numeric[]) AS u(id, score, pct) WHERE n.id = u.id`, ids, scores, pcts)
	if err != nil {
		return 0, fmt.Errorf("updating scores: %w", err)
	}
	return tag.RowsAffected(), nil
}

func setScoreboardState(ctx context.Context, tx pgx.Tx, end int64, days int) error {
	if _, err := tx.Exec(ctx, `INSERT INTO coordinator_scoreboard (window_end_epoch, uptime_days) VALUES ($1, $2)
		ON CONFLICT (singleton) DO UPDATE SET window_end_epoch = EXCLUDED.window_end_epoch, uptime_days = EXCLUDED.uptime_days`, end, days); err != nil {
		return fmt.Errorf("recording the scoreboard state: %w", err)
	}
	return nil
}
