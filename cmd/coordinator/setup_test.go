package main

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// batches is how many batches crashNet's submissions span.
const batches = 5

// netStart is where the tests' synthetic networks and batch logs start.
var netStart = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// testBundle is what a test of the binary starts from: its own database,
// seeded as a coordinator finds it before its first batch. The test's
// cleanup closes the pool and drops the database.
type testBundle struct {
	cfg  config.Postgres // connection settings, for the binary's environment
	pool *pgxpool.Pool
}

// setup returns a fresh database holding subs and the starting bot_logs row
// at netStart.
func setup(t *testing.T, subs []coordinator.Submission) *testBundle {
	t.Helper()
	cfg, pool := pgtest.Seed(t, subs, netStart)
	return &testBundle{cfg: cfg, pool: pool}
}

// crashNet is the verified submissions of the crash tests' network: 150
// producers over batches batches.
func crashNet() []coordinator.Submission {
	return synthnet.Generate(synthnet.Params{Seed: 11, Producers: 150, Start: netStart, Duration: batches * 20 * time.Minute}).Verified()
}

// seeded is setup with crashNet's submissions and alerts for every producer
// missing a batch or under 90% over 24h (a score window kept apart from
// nodes.score), to a URL refused at delivery: the alert state, the score
// window and the outbox are compared, nothing is sent.
func seeded(t *testing.T) config.Postgres {
	t.Helper()
	b := setup(t, crashNet())
	if _, err := b.pool.Exec(t.Context(), `INSERT INTO alert_subscriptions (all_producers, channel, url, secret, rules)
		VALUES (true, 'webhook', 'http://192.0.2.1/hook', 'secret', '[{"kind": "missed_batches", "count": 1}, {"kind": "score_below", "window": "24h", "percent": 90}]')`); err != nil {
		t.Fatal(err)
	}
	return b.cfg
}
