package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
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
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 1, Producers: producers, Start: start, Duration: time.Duration(batches) * benchInterval})
	_, pool := pgtest.Seed(b, net.Verified(), start)
	bulk, why, err := postgres.CanBulkWritePoints(ctx, pool)
	if err != nil {
		b.Fatal(err)
	}
	if !bulk {
		b.Logf("bulk points path off: %s", why)
	}
	store := &postgres.Database{Pool: pool, BulkPoints: bulk && os.Getenv("BENCH_PLAIN_POINTS") != "1"}
	return &coordinator.Engine{Ledger: store, Source: store, Interval: benchInterval, MiniBatches: 5, UptimeDays: 90,
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

// BenchmarkEvidence measures the cost of the per-producer evidence. On one
// database, batches alternate between evidence off and on (so that disk
// noise, other load and history growth hit both alike); the median time of
// each is reported with the overhead. On a shared machine that difference of
// two noisy medians is itself noisy, so the evidence's own cost is also
// measured inside each evidence-on batch: its write step (between the
// tx_scoreboard and tx_evidence checkpoints) plus the pure computation
// (coordinator.Evidence on the same submissions), as a share of the rest of
// that same batch ("%inbatch": numerator and denominator under the same
// load). Also reported: the storage of batch_evidence per row (heap, index
// and TOAST; and heap alone).
func BenchmarkEvidence(b *testing.B) {
	for _, producers := range []int{3000, 10000} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			eng := benchEngine(b, producers, 2*b.N+1)
			ctx := context.Background()
			if _, err := eng.RunBatch(ctx); err != nil { // the full scoreboard recompute
				b.Fatal(err)
			}
			var stepStart time.Time
			var step time.Duration
			store := eng.Ledger.(*postgres.Database)
			store.Checkpoint = func(_ context.Context, name string) {
				switch name {
				case "tx_scoreboard":
					stepStart = time.Now()
				case "tx_evidence":
					step = time.Since(stepStart)
				}
			}
			var off, on []time.Duration
			var shares []float64
			b.ResetTimer()
			for i := range 2 * b.N {
				eng.NoEvidence = i%2 == 0
				began := time.Now()
				s, err := eng.RunBatch(ctx)
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(began)
				if eng.NoEvidence {
					off = append(off, took)
					continue
				}
				on = append(on, took)
				b.StopTimer()
				subs, err := store.Submissions(ctx, s.Window)
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				coordinator.Evidence(subs, s.Result)
				own := step + time.Since(t0)
				shares = append(shares, 100*own.Seconds()/(took-own).Seconds())
				b.StartTimer()
			}
			b.StopTimer()
			median := func(ds []time.Duration) float64 {
				slices.Sort(ds)
				m := ds[len(ds)/2]
				if len(ds)%2 == 0 {
					m = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
				}
				return float64(m.Microseconds()) / 1000
			}
			mOff, mOn := median(off), median(on)
			slices.Sort(shares)
			b.ReportMetric(mOff, "ms/batch-off")
			b.ReportMetric(mOn, "ms/batch-on")
			b.ReportMetric(100*(mOn-mOff)/mOff, "%overhead")
			b.ReportMetric(shares[len(shares)/2], "%inbatch")
			pool := store.Pool
			var rows, total, heap int64
			if err := pool.QueryRow(ctx, `SELECT count(*), pg_total_relation_size('batch_evidence'), pg_relation_size('batch_evidence')
				FROM batch_evidence`).Scan(&rows, &total, &heap); err != nil {
				b.Fatal(err)
			}
			if rows > 0 {
				b.ReportMetric(float64(total)/float64(rows), "bytes/row")
				b.ReportMetric(float64(heap)/float64(rows), "heap-bytes/row")
			}
		})
	}
}
