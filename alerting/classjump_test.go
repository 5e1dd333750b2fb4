package alerting_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// TestErrorClassJumpAlertsOnce: from the third batch on, a quarter of the
// submissions fail with a sok digest mismatch (the MinaProtocol/mina 19299
// situation); the operator alert is written to the outbox in exactly one
// batch transaction, the third, however many batches follow.
func TestErrorClassJumpAlertsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	interval := 20 * time.Minute
	const batches, stormFrom = 6, 2
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
	net := synthnet.Generate(synthnet.Params{Seed: 3, Producers: 60, Start: start, Duration: batches * interval})
	subs := net.Verified()
	storm := 0
	for i := range subs {
		s := &subs[i]
		if s.SubmittedAt.Before(start.Add(stormFrom*interval)) || i%4 != 0 {
			continue
		}
		f := false
		msg := "Sok digest mismatch: the snark work was produced for another prover"
		s.Verified, s.ValidationError, s.StateHash, s.Parent, s.Height, s.Slot = &f, &msg, nil, nil, nil, nil
		storm++
	}
	if storm == 0 {
		t.Fatal("no submission in the storm")
	}
	if _, err := pgtest.InsertSubmissions(ctx, pool, subs); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := queue.New(pool, false, queue.Options{Policy: outbound.Policy{AllowPrivate: true}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	store := &postgres.Database{Pool: pool}
	ev := &alerting.Evaluator{Queue: q, Operator: &alert.Alerter{On: true}, Logger: log}
	store.Steps = []postgres.Step{{Name: alerting.StepName, Run: ev.Step}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 1, UptimeDays: 1,
		Logger: log, Now: func() time.Time { return start.Add(48 * time.Hour) }}
	var ids []int64
	for range batches {
		s, err := eng.RunBatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.Committed.BotLogID)
	}
	rows, err := pool.Query(ctx, `SELECT bot_log_id, payload->>'text' FROM alert_outbox
		WHERE subscription_id IS NULL AND payload->>'reason' = 'error_class_jump'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int64
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
		t.Log(text)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != ids[stormFrom] {
		t.Fatalf("error_class_jump alerts in batches %v, want exactly one, in batch %d", got, ids[stormFrom])
	}
}
