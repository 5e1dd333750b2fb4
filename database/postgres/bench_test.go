package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

const benchInterval = 20 * time.Minute

// benchEngine seeds a database with batches' worth of verified submissions of
// a network of producers and returns an engine at its first batch.
func benchEngine(b *testing.B, producers, batches int) *coordinator.Engine {
	b.Helper()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(b)
	pool := pgtest.Pool(b, cfg)
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 1, Producers: producers, Start: start, Duration: time.Duration(batches) * benchInterval})
	if _, err := postgres.InsertSubmissions(ctx, pool, net.Verified()); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE submissions`); err != nil {
		b.Fatal(err)
	}
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		b.Fatal(err)
	}
	bulk, why, err := postgres.CanBulkWritePoints(ctx, pool)
	if err != nil {
		b.Fatal(err)
	}
	if !bulk {
		b.Logf("bulk points path off: %s", why)
	}
	store := &postgres.Store{Pool: pool, BulkPoints: bulk && os.Getenv("BENCH_PLAIN_POINTS") != "1"}
	return &coordinator.Engine{Store: store, Source: store, Interval: benchInterval, MiniBatches: 5, UptimeDays: 90,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// BenchmarkBatch measures a whole 20-minute batch against real Postgres:
// loading the submissions, scoring and the one-transaction write, scoreboard
// and score history included.
func BenchmarkBatch(b *testing.B) {
	for _, producers := range []int{200, 1000, 10000} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			eng := benchEngine(b, producers, b.N+1)
			ctx := context.Background()
			// The first batch recomputes the scoreboard in full; steady state is
			// what is measured.
			if _, err := eng.RunBatch(ctx); err != nil {
				b.Fatal(err)
			}
			var valid int
			b.ResetTimer()
			for range b.N {
				s, err := eng.RunBatch(ctx)
				if err != nil {
					b.Fatal(err)
				}
				valid = len(s.Result.Valid)
			}
			b.ReportMetric(float64(valid), "valid/batch")
		})
	}
}

// BenchmarkDay processes a day of 20-minute batches (72) and reports the
// mean time of the first and of the last 10 batches: the cost of a batch must
// not grow with the history. BENCH_DAY_PRODUCERS sets the network size
// (default 1000).
func BenchmarkDay(b *testing.B) {
	producers := 1000
	if s := os.Getenv("BENCH_DAY_PRODUCERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("BENCH_DAY_PRODUCERS: %v", err)
		}
		producers = n
	}
	const batches = 72
	for range b.N {
		b.StopTimer()
		eng := benchEngine(b, producers, batches)
		b.StartTimer()
		ctx := context.Background()
		durations := make([]time.Duration, batches)
		for i := range batches {
			began := time.Now()
			if _, err := eng.RunBatch(ctx); err != nil {
				b.Fatal(err)
			}
			durations[i] = time.Since(began)
		}
		mean := func(ds []time.Duration) float64 {
			var sum time.Duration
			for _, d := range ds {
				sum += d
			}
			return float64(sum.Milliseconds()) / float64(len(ds))
		}
		b.ReportMetric(mean(durations[:10]), "ms/batch-first10")
		b.ReportMetric(mean(durations[batches-10:]), "ms/batch-last10")
		b.ReportMetric(float64(producers), "producers")
	}
}
