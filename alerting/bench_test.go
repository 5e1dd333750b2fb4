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
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := queue.New(pool, false, queue.Options{Logger: log, Policy: outbound.Policy{AllowPrivate: true}})
	if err != nil {
		b.Fatal(err)
	}
	ev := &alerting.Evaluator{Queue: q, Logger: log}
	if testing.Verbose() {
		ev.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var last *coordinator.Record
	var lastOut coordinator.Committed
	store := &postgres.Database{Pool: pool, Steps: []postgres.Step{{Name: alerting.StepName, Run: func(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, out coordinator.Committed) error {
		last, lastOut = rec, out
		return ev.Step(ctx, tx, rec, out)
	}}}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: 20 * time.Minute, MiniBatches: 5, UptimeDays: 90,
		Logger: log, Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}
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
