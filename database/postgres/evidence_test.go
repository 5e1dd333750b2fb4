package postgres_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

func ptrTo[T any](v T) *T { return &v }

// evidenceRows renders batch_evidence by natural keys.
const evidenceRows = `SELECT concat_ws('|', b.batch_end_epoch, p.block_producer_key, e.outcome, e.submissions, e.valid, e.unverified,
	coalesce(e.invalid_by_class::text, '-'), coalesce(e.details::text, '-'))
	FROM batch_evidence e JOIN bot_logs b ON b.id = e.bot_log_id JOIN evidence_producers p ON p.id = e.producer_id
	ORDER BY 1`

// TestEvidenceWritten scores two hand-made batches and checks every evidence
// row against values written out by hand.
func TestEvidenceWritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, cfg)
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
	at := func(batch, sec int) time.Time {
		return start.Add(time.Duration(batch)*20*time.Minute + time.Duration(sec)*time.Second)
	}
	valid := func(key string, batch, sec int, hash string) coordinator.Submission {
		return coordinator.Submission{SubmittedAtDate: start, SubmittedAt: at(batch, sec), Submitter: key,
			StateHash: ptrTo(hash), Parent: ptrTo("3NKparent"), Height: ptrTo(int64(10)), Slot: ptrTo(int64(20)), Verified: ptrTo(true)}
	}
	failed := func(key string, batch, sec int, text string) coordinator.Submission {
		return coordinator.Submission{SubmittedAtDate: start, SubmittedAt: at(batch, sec), Submitter: key,
			Verified: ptrTo(false), ValidationError: ptrTo(text)}
	}
	subs := []coordinator.Submission{
		valid("B62qa", 0, 10, "3NKtip"), valid("B62qa", 0, 300, "3NKtip"),
		valid("B62qb", 0, 20, "3NKtip"),
		valid("B62qf", 0, 30, "3NKfork"), valid("B62qf", 0, 40, "3NKfork2"),
		failed("B62qi", 0, 50, "snark verification failed"), failed("B62qi", 0, 60, "sok digest mismatch"),
		{SubmittedAtDate: start, SubmittedAt: at(0, 70), Submitter: "B62qu"},
		// Batch 2: a is fine, i fails again, b is silent.
		valid("B62qa", 1, 10, "3NKtip2"), failed("B62qi", 1, 20, "block not found"),
	}
	// 20 more producers on the tip, so that 3NKfork (1 submitter) is under 5%.
	for i := range 20 {
		subs = append(subs, valid("B62qz"+string(rune('a'+i)), 0, 100+i, "3NKtip"))
	}
	if _, err := pgtest.InsertSubmissions(ctx, pool, subs); err != nil {
		t.Fatal(err)
	}
	store := &postgres.Database{Pool: pool}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: 20 * time.Minute, MiniBatches: 1, UptimeDays: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return start.Add(24 * time.Hour) }}
	first, err := eng.RunBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Committed.PreviousShares != nil {
		t.Errorf("the first batch has no previous evidence, got %+v", first.Committed.PreviousShares)
	}
	second, err := eng.RunBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prev := second.Committed.PreviousShares
	if prev == nil || prev.Submissions != 28 || prev.ByClass["snark_invalid"] != 1 || prev.ByClass["sok_digest_mismatch"] != 1 || len(prev.ByClass) != 2 {
		t.Errorf("previous shares %+v, want 28 submissions, snark_invalid 1, sok_digest_mismatch 1", prev)
	}

	got := strs(t, ctx, pool, evidenceRows)
	got = slices.DeleteFunc(got, func(s string) bool { return len(s) > 16 && s[11:16] == "B62qz" })
	want := []string{
		`1717201200|B62qa|point|2|2|0|-|-`,
		`1717201200|B62qb|point|1|1|0|-|-`,
		`1717201200|B62qf|off_chain|2|2|0|-|{"state_hashes": ["3NKfork", "3NKfork2"]}`,
		`1717201200|B62qi|invalid|2|0|0|{"snark_invalid": 1, "sok_digest_mismatch": 1}|{"error_examples": {"snark_invalid": "snark verification failed", "sok_digest_mismatch": "sok digest mismatch"}}`,
		`1717201200|B62qu|unverified|1|0|1|-|-`,
		`1717202400|B62qa|point|1|1|0|-|-`,
		`1717202400|B62qi|invalid|1|0|0|{"block_missing": 1}|{"error_examples": {"block_missing": "block not found"}}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("batch_evidence:\n got %q\nwant %q", got, want)
	}
	// Replacing a batch's evidence with the same evidence changes nothing;
	// replacing it with nothing deletes exactly that batch's rows.
	replace := func(ev *coordinator.BatchEvidence) {
		t.Helper()
		if err := postgres.ReplaceEvidence(ctx, pool, first.Committed.BotLogID, ev); err != nil {
			t.Fatal(err)
		}
	}
	all := strs(t, ctx, pool, evidenceRows)
	replace(first.Evidence)
	if again := strs(t, ctx, pool, evidenceRows); !slices.Equal(again, all) {
		t.Errorf("evidence replaced by the same evidence differs:\n got %q\nwant %q", again, all)
	}
	defer func() {
		replace(nil)
		if left := strs(t, ctx, pool, evidenceRows); !slices.Equal(left, want[5:]) {
			t.Errorf("after deleting the first batch's evidence: %q, want %q", left, want[5:])
		}
	}()

	var zs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM batch_evidence e JOIN evidence_producers p ON p.id = e.producer_id
		WHERE p.block_producer_key LIKE 'B62qz%' AND e.outcome = 'point'`).Scan(&zs); err != nil {
		t.Fatal(err)
	}
	if zs != 20 {
		t.Errorf("%d of the 20 tip producers have a point row", zs)
	}
	if got, want := strs(t, ctx, pool, `SELECT concat_ws('|', b.batch_end_epoch, s.submissions, s.valid, s.unverified, s.invalid, s.producers,
		s.point_producers, s.off_chain_producers, s.invalid_producers, s.unverified_producers)
		FROM batch_evidence_summary s JOIN bot_logs b ON b.id = s.bot_log_id ORDER BY 1`),
		[]string{"1717201200|28|25|1|2|25|22|1|1|1", "1717202400|2|1|0|1|2|1|0|1|0"}; !slices.Equal(got, want) {
		t.Errorf("batch_evidence_summary:\n got %q\nwant %q", got, want)
	}
	if got, want := strs(t, ctx, pool, `SELECT concat_ws('|', b.batch_end_epoch, c.class, c.submissions, c.producers, c.example)
		FROM batch_error_classes c JOIN bot_logs b ON b.id = c.bot_log_id ORDER BY 1`),
		[]string{"1717201200|snark_invalid|1|1|snark verification failed", "1717201200|sok_digest_mismatch|1|1|sok digest mismatch",
			"1717202400|block_missing|1|1|block not found"}; !slices.Equal(got, want) {
		t.Errorf("batch_error_classes:\n got %q\nwant %q", got, want)
	}
}

// TestEvidenceProducerCacheAfterRollback: a batch that inserts new
// evidence producers and then rolls back must not leave their ids cached;
// the retry writes rows that all name existing producers.
func TestEvidenceProducerCacheAfterRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
	var subs []coordinator.Submission
	for i := range 30 {
		for b := range 2 {
			subs = append(subs, coordinator.Submission{SubmittedAtDate: start, SubmittedAt: start.Add(time.Duration(b)*20*time.Minute + time.Duration(i)*time.Second),
				Submitter: "B62qk" + string(rune('A'+i)) + string(rune('a'+b)), StateHash: ptrTo("3NKtip"), Verified: ptrTo(true)})
		}
	}
	if _, err := pgtest.InsertSubmissions(ctx, pool, subs); err != nil {
		t.Fatal(err)
	}
	failures := 1
	store := &postgres.Database{Pool: pool, Steps: []postgres.Step{{Name: "flaky", Run: func(context.Context, pgx.Tx, *coordinator.Record, coordinator.Committed) error {
		if failures > 0 {
			failures--
			return errors.New("injected failure after the evidence step")
		}
		return nil
	}}}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: 20 * time.Minute, MiniBatches: 1, UptimeDays: 1, Retries: 1,
		Retry: retrypolicy.Policy{First: time.Millisecond}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return start.Add(24 * time.Hour) }}
	for range 2 {
		failures = 1
		if _, err := eng.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var rows, orphans int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE p.id IS NULL)
		FROM batch_evidence e LEFT JOIN evidence_producers p ON p.id = e.producer_id`).Scan(&rows, &orphans); err != nil {
		t.Fatal(err)
	}
	if rows != 60 || orphans != 0 {
		t.Errorf("%d evidence rows, %d naming no producer; want 60 and 0", rows, orphans)
	}
}
