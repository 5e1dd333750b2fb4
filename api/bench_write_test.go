package api_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// BenchmarkReadIndexWriteCost measures what the read API's former index
// (migration 00009, points_summary (node_id, bot_log_id), dropped by 00010
// since serve keeps the points in memory) cost the batch write: whole
// 20-minute batches at BENCH_API_WRITE_PRODUCERS producers (default 10,000)
// through the engine on two databases with the same submissions, one with
// the index created again and one as migrated (without it), run in turns
// (ABBA, so that disk noise, other load and history growth hit both alike),
// reporting the median batch time of each and the overhead.
func BenchmarkReadIndexWriteCost(b *testing.B) {
	producers := envInt(b, "BENCH_API_WRITE_PRODUCERS", 10000)
	ctx := context.Background()
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	const interval = 20 * time.Minute
	net := synthnet.Generate(synthnet.Params{Seed: 1, Producers: producers, Start: start, Duration: time.Duration(b.N+1) * interval})
	subs := net.Verified()
	engine := func(indexed bool) *coordinator.Engine {
		cfg := pgtest.NewDatabase(b)
		pool := pgtest.Pool(b, cfg)
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass('idx_points_summary_node_bot_log') IS NOT NULL`).Scan(&exists); err != nil || exists {
			b.Fatalf("the migrated schema still has the read index (%v)", err)
		}
		if indexed {
			if _, err := pool.Exec(ctx, `CREATE INDEX idx_points_summary_node_bot_log ON points_summary (node_id, bot_log_id)`); err != nil {
				b.Fatal(err)
			}
		}
		pgtest.SeedPool(b, pool, subs, start)
		bulk, _, err := postgres.CanBulkWritePoints(ctx, pool)
		if err != nil {
			b.Fatal(err)
		}
		store := &postgres.Database{Pool: pool, BulkPoints: bulk}
		eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 5, UptimeDays: 90,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if _, err := eng.RunBatch(ctx); err != nil { // the full scoreboard recompute
			b.Fatal(err)
		}
		return eng
	}
	engines := []*coordinator.Engine{engine(true), engine(false)}
	times := [][]time.Duration{nil, nil}
	b.ResetTimer()
	for i := range b.N {
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, e := range order {
			began := time.Now()
			if _, err := engines[e].RunBatch(ctx); err != nil {
				b.Fatal(err)
			}
			times[e] = append(times[e], time.Since(began))
		}
	}
	median := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	mw, mo := median(times[0]), median(times[1])
	b.ReportMetric(ms(mo), "ms/batch-without")
	b.ReportMetric(ms(mw), "ms/batch-with")
	b.ReportMetric(100*(float64(mw)/float64(mo)-1), "%-overhead")
}
