package postgres_test

import (
	"context"
	_ "embed"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/delegation-program/uptime-coordinator/database/migrations"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

//go:embed testdata/original_schema.sql
var originalSchema string

const latestVersion = 11

// catalog lists the schema objects of public: columns with types, nullability
// and defaults, indexes, constraints, triggers and functions.
func catalog(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'function ' || proname || '(' || pg_get_function_identity_arguments(oid) || ') '
       || regexp_replace(prosrc, '\s+', ' ', 'g')
  FROM pg_proc WHERE pronamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// fingerprint hashes the content of every original table.
func fingerprint(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range []string{"bot_logs", "statehash", "bot_logs_statehash", "nodes", "points", "score_history", "submissions", "points_summary"} {
		var sum string
		if err := pool.QueryRow(context.Background(), `SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM `+table+` t`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		out[table] = sum
	}
	return out
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestMigrateEmptyDatabase(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewEmptyDatabase(t)
	ctx := context.Background()
	res, err := postgres.Migrate(ctx, pgtest.Pool(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) || res.Current != latestVersion {
		t.Fatalf("first run applied %v, now at %d", res.Applied, res.Current)
	}
	res, err = postgres.Migrate(ctx, pgtest.Pool(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Current != latestVersion {
		t.Fatalf("second run applied %v, now at %d; want nothing applied", res.Applied, res.Current)
	}
	pool := pgtest.Pool(t, cfg)
	got := strings.Join(catalog(t, pool), "\n")
	for _, want := range []string{
		"index CREATE INDEX idx_nodes_block_producer_key ON public.nodes USING btree (block_producer_key)",
		"index CREATE INDEX idx_submissions_submitted_at ON public.submissions USING btree (submitted_at)",
		"trigger CREATE TRIGGER trg_after_insert_points AFTER INSERT ON public.points FOR EACH ROW EXECUTE FUNCTION fn_update_point_summary()",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("schema lacks %q", want)
		}
	}
}

// seedOriginal fills a database that has the original schema with a little
// of everything, as the original tool would have left it.
func seedOriginal(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	exec(t, pool, `INSERT INTO bot_logs (processing_time, files_processed, file_timestamps, batch_start_epoch, batch_end_epoch)
		VALUES (0, -1, '2024-06-01 00:00:00+00', 1717200000, 1717200000), (12.5, 3, '2024-06-01 00:01:00+00', 1717200000, 1717201200)`)
	exec(t, pool, `INSERT INTO statehash (value) VALUES ('3NKparent'), ('3NKchild')`)
	exec(t, pool, `INSERT INTO nodes (block_producer_key, updated_at, score, score_percent) VALUES ('B62qa', now(), 1, 100.00), ('B62qb', now(), 1, 100.00)`)
	exec(t, pool, `INSERT INTO bot_logs_statehash (parent_statehash_id, statehash_id, weight, bot_log_id) VALUES (1, 2, 0, 2)`)
	exec(t, pool, `INSERT INTO points (file_name, file_timestamps, blockchain_epoch, blockchain_height, amount, created_at, node_id, bot_log_id, statehash_id)
		VALUES ('2024-06-01 00:01:00-B62qa', '2024-06-01 00:01:00+00', 1717200060000, 10, 1, now(), 1, 2, 2),
		       ('2024-06-01 00:02:00-B62qa', '2024-06-01 00:02:00+00', 1717200120000, 10, 1, now(), 1, 2, 2),
		       ('2024-06-01 00:03:00-B62qb', '2024-06-01 00:03:00+00', 1717200180000, 10, 1, now(), 2, 2, 2)`)
	exec(t, pool, `INSERT INTO score_history (node_id, score_at, score, score_percent) VALUES (1, '2024-06-01 00:20:00', 1, 100.00)`)
	exec(t, pool, `INSERT INTO submissions (submitted_at_date, submitted_at, submitter, block_hash, state_hash, parent, height, slot, verified)
		VALUES ('2024-06-01', '2024-06-01 00:01:00', 'B62qa', '3NKchild', '3NKchild', '3NKparent', 10, 20, true)`)
}

func TestMigrateOriginalSchema(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewEmptyDatabase(t)
	pool := pgtest.Pool(t, cfg)
	exec(t, pool, originalSchema)
	seedOriginal(t, pool)
	before, data := catalog(t, pool), fingerprint(t, pool)

	res, err := postgres.Migrate(context.Background(), pgtest.Pool(t, cfg))
	if err != nil {
		t.Fatalf("migrating a database the original created: %v", err)
	}
	if res.Current != latestVersion {
		t.Fatalf("now at version %d, want %d", res.Current, latestVersion)
	}
	after := catalog(t, pool)
	for _, obj := range before {
		if strings.HasPrefix(obj, "function cleanup_old_data(") {
			continue // replaced on purpose: see 00003 and docs/schema.md
		}
		if !slices.Contains(after, obj) {
			t.Errorf("migration changed or removed %q", obj)
		}
	}
	if got := fingerprint(t, pool); !mapsEqual(got, data) {
		t.Errorf("migration changed data:\nbefore %v\nafter  %v", data, got)
	}

	// explain reads the original's batches (scored before evidence existed):
	// the point from points_summary, the rest derived from the submissions.
	ex, err := inspect.Explain(context.Background(), pool, "B62qa", time.Unix(1717200000, 0), time.Unix(1717203600, 0))
	if err != nil {
		t.Fatalf("explain on the original's data: %v", err)
	}
	if len(ex.Batches) != 1 {
		t.Fatalf("explain on the original's data: %d batches, want 1 (the starting row is not a batch)", len(ex.Batches))
	}
	b := ex.Batches[0]
	// The fixture's hash "3NKchild" is not base58 (no 'l'): today's shape
	// check counts the submission malformed, while points_summary keeps the
	// point the original gave.
	if !b.Point || b.Reason != "point" || !b.Derived || b.Submissions != 1 || b.Valid != 0 || b.InvalidByClass["malformed"] != 1 ||
		ex.Summary.Points != 1 || ex.Summary.Derived != 1 {
		t.Errorf("explain on the original's data: %+v, summary %+v", b, ex.Summary)
	}

	// Our first migration creates exactly the original's objects.
	fresh := pgtest.NewEmptyDatabase(t)
	if _, err := postgres.Migrate(context.Background(), pgtest.Pool(t, fresh)); err != nil {
		t.Fatal(err)
	}
	ours := catalog(t, pgtest.Pool(t, fresh))
	for _, obj := range before {
		if strings.HasPrefix(obj, "function cleanup_old_data(") {
			continue
		}
		if !slices.Contains(ours, obj) {
			t.Errorf("the migrated schema lacks the original's %q", obj)
		}
	}
	if !slices.Equal(ours, after) {
		t.Errorf("a migrated original database and a migrated empty one differ:\n%s", diff(ours, after))
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diff(a, b []string) string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, "- "+s)
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			out = append(out, "+ "+s)
		}
	}
	return strings.Join(out, "\n")
}

func TestTriggerKeepsOneSummaryRowPerBatchAndNode(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	exec(t, pool, `INSERT INTO bot_logs (files_processed, batch_start_epoch, batch_end_epoch) VALUES (1, 0, 1200), (1, 1200, 2400)`)
	exec(t, pool, `INSERT INTO nodes (block_producer_key) VALUES ('a'), ('b')`)
	insert := `INSERT INTO points (amount, node_id, bot_log_id) VALUES (1, 1, 1), (1, 1, 1), (1, 2, 1), (1, 1, 2)`
	exec(t, pool, insert)
	exec(t, pool, insert) // the same points a second time
	var points, summary, pairs int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM points), (SELECT count(*) FROM points_summary),
		(SELECT count(*) FROM (SELECT DISTINCT bot_log_id, node_id FROM points_summary) d)`).Scan(&points, &summary, &pairs); err != nil {
		t.Fatal(err)
	}
	if points != 8 || summary != 3 || pairs != 3 {
		t.Fatalf("points %d, points_summary %d (distinct %d); want 8, 3, 3", points, summary, pairs)
	}
}

func TestCleanupOldData(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, cfg)
	ctx := context.Background()
	// Batches 100 days, 10 days and 1 day old; threshold 30 days.
	exec(t, pool, `INSERT INTO bot_logs (id, files_processed, batch_start_epoch, batch_end_epoch)
		SELECT i, 1, extract(epoch FROM now() - d * interval '1 day')::bigint, extract(epoch FROM now() - d * interval '1 day')::bigint + 1200
		FROM (VALUES (1, 100), (2, 10), (3, 1)) v(i, d)`)
	exec(t, pool, `SELECT setval('bot_logs_id_seq', 3)`)
	exec(t, pool, `INSERT INTO statehash (id, value) VALUES (1, 'old'), (2, 'new'), (3, 'orphan'), (4, 'parent')`)
	exec(t, pool, `INSERT INTO nodes (id, block_producer_key) VALUES (1, 'a')`)
	// A NULL parent: the original's NOT IN would then delete no state hash at all.
	exec(t, pool, `INSERT INTO bot_logs_statehash (parent_statehash_id, statehash_id, weight, bot_log_id) VALUES (NULL, 1, 0, 1), (4, 2, 0, 2), (NULL, 2, 0, 3)`)
	exec(t, pool, `INSERT INTO points (amount, node_id, bot_log_id, statehash_id) VALUES (1, 1, 1, 1), (1, 1, 2, 2), (1, 1, 3, 2)`)
	exec(t, pool, `INSERT INTO submissions (submitted_at_date, submitted_at, submitter)
		SELECT (now() - d * interval '1 day')::date, now() - d * interval '1 day', 's' || d FROM (VALUES (100), (31), (10), (1)) v(d)`)
	exec(t, pool, `INSERT INTO coordinator_scoreboard (window_end_epoch, uptime_days) VALUES (1, 90)`)
	// Evidence of each batch; producer 'gone' appears only in the old one
	// (evidence_producers is a dictionary that is never cleaned).
	exec(t, pool, `INSERT INTO evidence_producers (id, block_producer_key) VALUES (1, 'a'), (2, 'gone')`)
	exec(t, pool, `INSERT INTO batch_evidence (producer_id, bot_log_id, outcome, submissions, valid, unverified)
		VALUES (1, 1, 'point', 1, 1, 0), (2, 1, 'unverified', 1, 0, 1), (1, 2, 'point', 1, 1, 0), (1, 3, 'point', 1, 1, 0)`)
	exec(t, pool, `INSERT INTO batch_evidence_summary (bot_log_id, submissions, valid, unverified, invalid, producers,
		point_producers, off_chain_producers, invalid_producers, unverified_producers)
		SELECT i, 1, 1, 0, 0, 1, 1, 0, 0, 0 FROM generate_series(1, 3) i`)
	exec(t, pool, `INSERT INTO batch_error_classes (bot_log_id, class, submissions, producers, example) VALUES (1, 'other', 1, 1, ''), (3, 'other', 1, 1, '')`)
	exec(t, pool, `INSERT INTO coordinator_failures (failed_at, window_start, window_end, attempt, final, error)
		SELECT now() - d * interval '1 day', now() - d * interval '1 day', now() - d * interval '1 day' + interval '20 minutes', 1, false, 'x'
		FROM (VALUES (100), (1)) v(d)`)

	notices, err := postgres.Cleanup(ctx, pgtest.Pool(t, cfg), 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(notices) == 0 || !strings.Contains(notices[len(notices)-1], "Cleanup summary: 1 points_summary, 1 points, 1 bot_logs_statehash, 1 bot_logs, 2 submissions, 2 statehash, 2 batch_evidence") {
		t.Errorf("notices = %q", notices)
	}
	for query, want := range map[string]string{
		`SELECT string_agg(id::text, ',' ORDER BY id) FROM bot_logs`:                               "2,3",
		`SELECT string_agg(bot_log_id::text, ',' ORDER BY bot_log_id) FROM points`:                 "2,3",
		`SELECT string_agg(bot_log_id::text, ',' ORDER BY bot_log_id) FROM points_summary`:         "2,3",
		`SELECT string_agg(bot_log_id::text, ',' ORDER BY bot_log_id) FROM bot_logs_statehash`:     "2,3",
		`SELECT string_agg(submitter, ',' ORDER BY submitter) FROM submissions`:                    "s1,s10",
		`SELECT string_agg(value, ',' ORDER BY value) FROM statehash`:                              "new,parent",
		`SELECT count(*)::text FROM coordinator_scoreboard`:                                        "0",
		`SELECT string_agg(bot_log_id::text, ',' ORDER BY bot_log_id) FROM batch_evidence`:         "2,3",
		`SELECT string_agg(bot_log_id::text, ',' ORDER BY bot_log_id) FROM batch_evidence_summary`: "2,3",
		`SELECT string_agg(bot_log_id::text, ',' ORDER BY bot_log_id) FROM batch_error_classes`:    "3",
		`SELECT string_agg(block_producer_key, ',' ORDER BY id) FROM evidence_producers`:           "a,gone",
		`SELECT count(*)::text FROM coordinator_failures`:                                          "1",
	} {
		var got string
		if err := pool.QueryRow(ctx, query).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", query, got, want)
		}
	}
	if _, err := postgres.Cleanup(ctx, pgtest.Pool(t, cfg), 0); err == nil {
		t.Error("cleanup with 0 days must be refused")
	}
}

// A migration rerun on a database that already has its objects (the version
// row lost after a partial failure, a restore, a hand-applied script) must
// succeed and leave the schema as it was: 00005 used to fail with "type
// evidence_outcome already exists".
func TestBatchEvidenceMigrationReruns(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, cfg)
	ctx := context.Background()
	labels := func() string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e
			JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'evidence_outcome'`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := catalog(t, pool)
	if l := labels(); l != "point,off_chain,invalid,unverified" {
		t.Fatalf("evidence_outcome is (%s) after the migrations", l)
	}
	exec(t, pool, `DELETE FROM goose_db_version WHERE version_id = 5`)
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithGoMigrations(migrations.Go()...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.ApplyVersion(ctx, 5, true); err != nil {
		t.Fatalf("rerunning 00005 on a database that has its objects: %v", err)
	}
	if l := labels(); l != "point,off_chain,invalid,unverified" {
		t.Errorf("evidence_outcome is (%s) after the rerun", l)
	}
	if after := catalog(t, pool); !slices.Equal(before, after) {
		t.Errorf("the rerun changed the schema:\nbefore %q\nafter  %q", before, after)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id = 5 AND is_applied`).Scan(&n); err != nil || n != 1 {
		t.Errorf("version 5 recorded %d times (%v), want once", n, err)
	}
}
