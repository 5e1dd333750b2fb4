package alerting_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// BenchmarkStep measures the alerts' step of a batch transaction at 10,000
// producers after 6 batches: with no subscription (the miss counts only),
// and with a subscription to every producer with missed_batches, and with
// score_below over 24h too. Each iteration runs the step in a transaction
// that is rolled back.
func BenchmarkStep(b *testing.B) {
	ctx := context.Background()
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	const batches = 6
	net := synthnet.Generate(synthnet.Params{Seed: 5, Producers: 10000, Start: start, Duration: batches * 20 * time.Minute})
	_, pool := pgtest.Seed(b, net.Verified(), start)
	ev := benchEvaluator(b, pool)
	var last *coordinator.Record
	var lastOut coordinator.Committed
	store := &postgres.Database{Pool: pool, Steps: []postgres.Step{{Name: alerting.StepName, Run: func(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, out coordinator.Committed) error {
		last, lastOut = rec, out
		return ev.Step(ctx, tx, rec, out)
	}}}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: 20 * time.Minute, MiniBatches: 5, UptimeDays: 90,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}
	for range batches {
		if _, err := eng.RunBatch(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		rules string
	}{
		{"no subscription", ""},
		{"every producer missed_batches", `[{"kind": "missed_batches", "count": 3}]`},
		{"every producer missed_batches and score_below 24h", `[{"kind": "missed_batches", "count": 3}, {"kind": "score_below", "window": "24h", "percent": 95}]`},
	} {
		if tc.rules != "" {
			if _, err := pool.Exec(ctx, `DELETE FROM alert_subscriptions`); err != nil {
				b.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `INSERT INTO alert_subscriptions (all_producers, channel, url, secret, rules)
				VALUES (true, 'webhook', 'https://hooks.example.com/x', 's', $1)`, tc.rules); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				tx, err := pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := ev.Step(ctx, tx, last, lastOut); err != nil {
					b.Fatal(err)
				}
				if err := tx.Rollback(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	fmt.Fprint(io.Discard, lastOut)
}

// BenchmarkStepScoreWindows measures the alerts' step at 10,000 producers
// with a subscription to every producer whose one rule is score_below over
// 7d or 30d (not the scoring window of UPTIME_DAYS_FOR_SCORE = 90), after a
// history of 30 days of 20-minute batches (2,160 batches, each producer with
// a point in ~90% of them: ~19 million points_summary rows), so that both
// windows are full. percent is 80, so no alert fires: it measures the scores,
// not the messages. Before each sub-benchmark the step of the batch before
// the last one is committed (as the batch path would have), then each
// iteration runs the last batch's step in a transaction that is rolled back.
func BenchmarkStepScoreWindows(b *testing.B) {
	ctx := context.Background()
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	const batches, historyDays = 6, 30
	interval := 20 * time.Minute
	net := synthnet.Generate(synthnet.Params{Seed: 5, Producers: 10000, Start: start, Duration: batches * interval})
	pool := pgtest.Pool(b, pgtest.NewDatabase(b))
	if _, err := pgtest.InsertSubmissions(ctx, pool, net.Verified()); err != nil {
		b.Fatal(err)
	}
	// The history: nodes, bot_logs and points_summary as the batch path
	// leaves them, before the starting row the engine continues from.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO nodes (block_producer_key, updated_at) SELECT k, now() FROM unnest($1::text[]) AS k`, []any{net.Producers}},
		{`INSERT INTO bot_logs (processing_time, files_processed, file_timestamps, batch_start_epoch, batch_end_epoch)
			SELECT 1, 100, to_timestamp(e), e - $3, e FROM generate_series($1::bigint, $2::bigint, $3::bigint) AS e`,
			[]any{start.Add(-historyDays*24*time.Hour + interval).Unix(), start.Unix(), int64(interval.Seconds())}},
		{`INSERT INTO points_summary (bot_log_id, node_id) SELECT b.id, n.id FROM bot_logs b CROSS JOIN nodes n
			WHERE abs(hashtext(b.id || ':' || n.id)) % 10 <> 0`, nil},
		{`VACUUM ANALYZE`, nil},
	} {
		if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := postgres.InitDatabase(ctx, pool, start, true); err != nil {
		b.Fatal(err)
	}
	ev := benchEvaluator(b, pool)
	type step struct {
		rec *coordinator.Record
		out coordinator.Committed
	}
	var steps []step
	store := &postgres.Database{Pool: pool, Steps: []postgres.Step{{Name: alerting.StepName, Run: func(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, out coordinator.Committed) error {
		steps = append(steps, step{rec, out})
		return ev.Step(ctx, tx, rec, out)
	}}}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 5, UptimeDays: 90,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}
	for range batches {
		if _, err := eng.RunBatch(ctx); err != nil {
			b.Fatal(err)
		}
	}
	prev, last := steps[len(steps)-2], steps[len(steps)-1]
	for _, window := range []string{"7d", "30d"} {
		if _, err := pool.Exec(ctx, `DELETE FROM alert_subscriptions`); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO alert_subscriptions (all_producers, channel, url, secret, rules)
			VALUES (true, 'webhook', 'https://hooks.example.com/x', 's', $1)`,
			fmt.Sprintf(`[{"kind": "score_below", "window": %q, "percent": 80}]`, window)); err != nil {
			b.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return ev.Step(ctx, tx, prev.rec, prev.out) }); err != nil {
			b.Fatal(err)
		}
		b.Run("every producer score_below "+window, func(b *testing.B) {
			for b.Loop() {
				tx, err := pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := ev.Step(ctx, tx, last.rec, last.out); err != nil {
					b.Fatal(err)
				}
				if err := tx.Rollback(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchEvaluator is an evaluator on pool's queue that logs nothing, or
// everything at debug level with -test.v.
func benchEvaluator(b *testing.B, pool *pgxpool.Pool) *alerting.Evaluator {
	log := slog.New(slog.DiscardHandler)
	q, err := queue.New(pool, false, queue.Options{Logger: log, Policy: outbound.Policy{AllowPrivate: true}})
	if err != nil {
		b.Fatal(err)
	}
	ev := &alerting.Evaluator{Queue: q, Logger: log}
	if testing.Verbose() {
		ev.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return ev
}
