package alerting_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/alertingtest"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// TestCatchUpAlertsMatchBatchByBatch: in catch-up mode the alert rules of
// each batch see what they see batch after batch, although the range
// creates the nodes rows of all its producers up front and the scores of
// its last batch: producers that first submit late in a range are not
// counted as missing in its earlier batches, and the UPTIME_DAYS_FOR_SCORE
// score is each batch's own. The alert tables and the outbox end identical.
func TestCatchUpAlertsMatchBatchByBatch(t *testing.T) {
	t.Parallel()
	const batches = 40
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	interval := 20 * time.Minute
	net := synthnet.Generate(synthnet.Params{Seed: 31, Producers: 30, Start: start, Duration: batches * interval,
		OfflineShare: 0.3, InvalidShare: 0.05})
	// Six producers submit nothing before batch 13, then for the rest: they
	// join in the middle of the second range (ranges of 10 from batch 4).
	late := map[string]bool{}
	for _, p := range net.Producers[:6] {
		late[p] = true
	}
	joined := start.Add(12 * interval)
	var subs []coordinator.Submission
	for _, s := range net.Verified() {
		if !late[s.Submitter] || !s.SubmittedAt.Before(joined) {
			subs = append(subs, s)
		}
	}
	recv := alertingtest.NewReceiver(t)
	run := func(catchUp bool) pgtest.Snapshot {
		ctx := context.Background()
		pool := pgtest.Pool(t, pgtest.NewDatabase(t))
		if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
			t.Fatal(err)
		}
		if _, err := pgtest.InsertSubmissions(ctx, pool, subs); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		// Not started: the messages stay in the outbox, which is compared.
		q, err := queue.New(pool, true, queue.Options{Policy: outbound.Policy{AllowPrivate: true}, Transport: recv.Transport(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		st := &subscriptions.Service{Pool: pool, Policy: outbound.Policy{AllowPrivate: true}, AdminToken: adminToken, Queue: q}
		if _, err := st.Create(ctx, subscriptions.Spec{URL: recv.Server.URL + "/all", Producers: subscriptions.Producers{All: true}, Channel: "webhook",
			Rules: []rules.Rule{{Kind: rules.MissedBatches}, {Kind: rules.ScoreBelow, Window: "90d", Percent: 85},
				{Kind: rules.ScoreBelow, Window: "24h", Percent: 80}}}, adminToken); err != nil {
			t.Fatal(err)
		}
		store := &postgres.Database{Pool: pool}
		ev := &alerting.Evaluator{Queue: q, PublicURL: "https://uptime.example.org/", Logger: log}
		store.Steps = []postgres.Step{{Name: alerting.StepName, Run: ev.Step}}
		eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 5, UptimeDays: 90,
			Logger: log, Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}
		if err := eng.Run(ctx, 4); err != nil {
			t.Fatal(err)
		}
		if catchUp {
			eng.CatchUpAfter, eng.CatchUpChunk = 3, 10
		}
		if err := eng.Run(ctx, batches-4); err != nil {
			t.Fatal(err)
		}
		var ranges, firedLate, outbox int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM bot_logs`).Scan(&ranges); err != nil || ranges != batches+1 {
			t.Fatalf("%d bot_logs rows (%v)", ranges, err)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM alert_outbox`).Scan(&outbox); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM alert_outbox o JOIN bot_logs b ON b.id = o.bot_log_id
			WHERE o.payload->>'producer' = ANY($1::text[]) AND b.batch_end_epoch <= $2`, net.Producers[:6], joined.Unix()).Scan(&firedLate); err != nil {
			t.Fatal(err)
		}
		if outbox < 10 {
			t.Fatalf("%d alerts queued: too few to compare anything", outbox)
		}
		if firedLate != 0 {
			t.Errorf("catch-up %v: %d alerts about the late producers before they joined", catchUp, firedLate)
		}
		return pgtest.TakeSnapshot(t, pool)
	}
	want := run(false)
	if d := want.Diff(run(true)); d != "" {
		t.Fatalf("catch-up alerts differ from batch by batch:\n%s", d)
	}
}
