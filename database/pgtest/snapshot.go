package pgtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// snapshotQueries render every table of the coordinator by natural keys:
// serial ids are replaced by what they point at (sequences are not
// transactional, so a rolled-back batch burns ids), and columns that hold the
// wall-clock time of a run (created_at, updated_at, processing_time) are left
// out.
var snapshotQueries = map[string]string{
	"bot_logs":  `SELECT concat_ws('|', batch_start_epoch, batch_end_epoch, files_processed, file_timestamps) FROM bot_logs`,
	"statehash": `SELECT value FROM statehash`,
	"bot_logs_statehash": `SELECT concat_ws('|', b.batch_end_epoch, s.value, coalesce(p.value, '-'), bs.weight)
		FROM bot_logs_statehash bs JOIN bot_logs b ON b.id = bs.bot_log_id JOIN statehash s ON s.id = bs.statehash_id
		LEFT JOIN statehash p ON p.id = bs.parent_statehash_id`,
	"nodes": `SELECT concat_ws('|', block_producer_key, coalesce(score::text, 'NULL'), coalesce(score_percent::text, 'NULL'),
		discord_id, email_id, application_status) FROM nodes`,
	"points": `SELECT concat_ws('|', b.batch_end_epoch, n.block_producer_key, s.value, p.file_name, p.file_timestamps,
		p.blockchain_epoch, p.blockchain_height, p.amount)
		FROM points p JOIN bot_logs b ON b.id = p.bot_log_id JOIN nodes n ON n.id = p.node_id JOIN statehash s ON s.id = p.statehash_id`,
	"points_summary": `SELECT concat_ws('|', b.batch_end_epoch, n.block_producer_key)
		FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id JOIN nodes n ON n.id = ps.node_id`,
	"score_history": `SELECT concat_ws('|', n.block_producer_key, h.score_at, h.score, h.score_percent)
		FROM score_history h JOIN nodes n ON n.id = h.node_id`,
	"batch_evidence": `SELECT concat_ws('|', b.batch_end_epoch, p.block_producer_key, e.outcome, e.submissions, e.valid, e.unverified,
		coalesce(e.invalid_by_class::text, '-'), coalesce(e.details::text, '-'))
		FROM batch_evidence e JOIN bot_logs b ON b.id = e.bot_log_id JOIN evidence_producers p ON p.id = e.producer_id`,
	"batch_evidence_summary": `SELECT concat_ws('|', b.batch_end_epoch, s.submissions, s.valid, s.unverified, s.invalid, s.producers,
		s.point_producers, s.off_chain_producers, s.invalid_producers, s.unverified_producers)
		FROM batch_evidence_summary s JOIN bot_logs b ON b.id = s.bot_log_id`,
	"batch_error_classes": `SELECT concat_ws('|', b.batch_end_epoch, c.class, c.submissions, c.producers, c.example)
		FROM batch_error_classes c JOIN bot_logs b ON b.id = c.bot_log_id`,
	"evidence_producers": `SELECT block_producer_key FROM evidence_producers`,
	"alert_producer_misses": `SELECT concat_ws('|', m.producer, m.misses, b.batch_end_epoch)
		FROM alert_producer_misses m JOIN bot_logs b ON b.id = m.bot_log_id`,
	"alert_state": `SELECT concat_ws('|', a.subscription_id, a.rule_key, a.producer, b.batch_end_epoch)
		FROM alert_state a JOIN bot_logs b ON b.id = a.fired_bot_log_id`,
	"alert_score_windows": `SELECT concat_ws('|', w.window_seconds, b.batch_end_epoch, w.window_end_epoch, w.batches)
		FROM alert_score_windows w LEFT JOIN bot_logs b ON b.id = w.bot_log_id`,
	// A count of 0 is no count: the full count leaves none, the update
	// by entering and leaving batches may.
	"alert_score_window_points": `SELECT concat_ws('|', p.window_seconds, n.block_producer_key, p.points)
		FROM alert_score_window_points p JOIN nodes n ON n.id = p.node_id WHERE p.points <> 0`,
	// The text of a score_below alert names its batch by bot_log_id too.
	"alert_outbox": `SELECT concat_ws('|', o.id, o.subscription_id, o.event, b.batch_end_epoch,
		CASE WHEN o.bot_log_id IS NOT NULL AND o.payload ? 'text'
			THEN (o.payload - 'bot_log_id') || jsonb_build_object('text',
				replace(o.payload->>'text', '(batch ' || o.bot_log_id || ')', '(batch ending ' || b.batch_end_epoch || ')'))
			ELSE o.payload - 'bot_log_id' END)
		FROM alert_outbox o LEFT JOIN bot_logs b ON b.id = o.bot_log_id`,
	"submissions": `SELECT concat_ws('|', submitted_at_date, submitted_at, submitter, created_at, block_hash, remote_addr,
		peer_id, graphql_control_port, built_with_commit_sha, state_hash, parent, height, slot, validation_error, verified)
		FROM submissions`,
}

// Snapshot is the content of a coordinator database, table by table, each
// as sorted rows.
type Snapshot map[string][]string

// TakeSnapshot reads the database behind pool.
func TakeSnapshot(t testing.TB, pool *pgxpool.Pool) Snapshot {
	t.Helper()
	snap := Snapshot{}
	for table, q := range snapshotQueries {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("snapshot of %s: %v", table, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatalf("snapshot of %s: %v", table, err)
			}
			snap[table] = append(snap[table], s)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("snapshot of %s: %v", table, err)
		}
		slices.Sort(snap[table])
	}
	return snap
}

// Diff describes how b differs from a ("" when equal), a few rows per table.
func (a Snapshot) Diff(b Snapshot) string {
	var out []string
	for table := range snapshotQueries {
		x, y := a[table], b[table]
		if slices.Equal(x, y) {
			continue
		}
		out = append(out, fmt.Sprintf("%s: %d rows vs %d rows", table, len(x), len(y)))
		shown := 0
		for _, r := range x {
			if !slices.Contains(y, r) && shown < 3 {
				out = append(out, "  - "+r)
				shown++
			}
		}
		shown = 0
		for _, r := range y {
			if !slices.Contains(x, r) && shown < 3 {
				out = append(out, "  + "+r)
				shown++
			}
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
