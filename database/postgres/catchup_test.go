package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

const rangeInterval = 20 * time.Minute

var rangeStart = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// adversarialNet is a network of batches 20-minute windows with the hard
// shapes of synthnet.Adversarial.
func adversarialNet(batches, producers int) []coordinator.Submission {
	net := synthnet.Generate(synthnet.Params{Seed: 21, Producers: producers, Start: rangeStart,
		Duration: time.Duration(batches) * rangeInterval, ForkShare: 0.08, InvalidShare: 0.05, DepartShare: 0.05})
	return synthnet.Adversarial(net.Verified(), rangeStart, rangeInterval)
}

// seedDB returns a fresh database holding subs and the starting row.
func seedDB(t *testing.T, subs []coordinator.Submission) *pgxpool.Pool {
	t.Helper()
	_, pool := pgtest.Seed(t, subs, rangeStart)
	return pool
}

func rangeEngine(pool *pgxpool.Pool, bulk bool, days, catchUpAfter, chunk int) *coordinator.Engine {
	store := &postgres.Database{Pool: pool, BulkPoints: bulk}
	far := rangeStart.Add(365 * 24 * time.Hour) // every window is long closed
	return &coordinator.Engine{Ledger: store, Source: store, Interval: rangeInterval, MiniBatches: 5, UptimeDays: days,
		CatchUpAfter: catchUpAfter, CatchUpChunk: chunk, Now: func() time.Time { return far },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestCatchUpMatchesBatchByBatch: hundreds of batches, including empty
// windows, windows where no hash reaches 5%, forks and unknown parents,
// committed in ranges of odd sizes (with the scoreboard state lost in
// between, and a 1-day window that slides) give the very same tables as
// one batch after the other.
func TestCatchUpMatchesBatchByBatch(t *testing.T) {
	t.Parallel()
	const batches = 200
	subs := adversarialNet(batches, 60)
	for _, bulk := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk_points=%v", bulk), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ref := seedDB(t, subs)
			if err := rangeEngine(ref, bulk, 1, 0, 0).Run(ctx, batches); err != nil {
				t.Fatal(err)
			}
			want := pgtest.TakeSnapshot(t, ref)
			if n := len(want["bot_logs"]); n != batches+1 {
				t.Fatalf("reference has %d bot_logs rows", n)
			}

			pool := seedDB(t, subs)
			// 5 batches one by one, then ranges of 37 (the last one shorter).
			if err := rangeEngine(pool, bulk, 1, 0, 0).Run(ctx, 5); err != nil {
				t.Fatal(err)
			}
			eng := rangeEngine(pool, bulk, 1, 3, 37)
			var sizes []int
			var logs bytes.Buffer
			eng.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			eng.AfterBatch = func(context.Context, *coordinator.Summary) { sizes = append(sizes, 1) }
			if err := eng.Run(ctx, 80); err != nil {
				t.Fatal(err)
			}
			exec(t, pool, `DELETE FROM coordinator_scoreboard`) // the next range recounts its base
			if err := eng.Run(ctx, batches-85); err != nil {
				t.Fatal(err)
			}
			if len(sizes) != batches-5 {
				t.Fatalf("%d batches reported, want %d", len(sizes), batches-5)
			}
			// 80 = 37+37+6; 115 = 37+37+37+4
			if n := strings.Count(logs.String(), "msg=\"caught up\""); n != 7 {
				t.Fatalf("%d ranges committed, want 7", n)
			}
			if d := want.Diff(pgtest.TakeSnapshot(t, pool)); d != "" {
				t.Fatalf("catch-up differs from batch by batch:\n%s", d)
			}
			var state int64
			if err := pool.QueryRow(ctx, `SELECT window_end_epoch FROM coordinator_scoreboard`).Scan(&state); err != nil ||
				state != rangeStart.Add(batches*rangeInterval).Unix() {
				t.Fatalf("scoreboard state %d (%v)", state, err)
			}
			// The loop goes on batch by batch from there: incremental and exact.
			for _, p := range []*pgxpool.Pool{ref, pool} {
				if _, err := pgtest.InsertSubmissions(ctx, p, synthnet.Generate(synthnet.Params{Seed: 22, Producers: 30,
					Start: rangeStart.Add(batches * rangeInterval), Duration: 2 * rangeInterval}).Verified()); err != nil {
					t.Fatal(err)
				}
				if err := rangeEngine(p, bulk, 1, 0, 0).Run(ctx, 2); err != nil {
					t.Fatal(err)
				}
			}
			if d := pgtest.TakeSnapshot(t, ref).Diff(pgtest.TakeSnapshot(t, pool)); d != "" {
				t.Fatalf("batches after a catch-up differ:\n%s", d)
			}
		})
	}
}
