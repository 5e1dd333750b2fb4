package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func envInt(b *testing.B, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

// seedDays inserts days of verified submissions of the same producers (one
// network a day, the producers' keys kept from the first) and the starting
// row, day by day so that memory stays flat (the next day is generated while
// one is stored).
func seedDays(b *testing.B, pool *pgxpool.Pool, producers, batches int) {
	b.Helper()
	ctx := context.Background()
	const perDay = 72
	days := make(chan []coordinator.Submission, 1)
	go func() {
		defer close(days)
		var keys []string
		for day := 0; day*perDay < batches; day++ {
			n := min(perDay, batches-day*perDay)
			start := rangeStart.Add(time.Duration(day*perDay) * benchInterval)
			net := synthnet.Generate(synthnet.Params{Seed: uint64(100 + day), Producers: producers, Start: start, Duration: time.Duration(n) * benchInterval})
			if keys == nil {
				keys = net.Producers
			}
			rename := map[string]string{}
			for i, k := range net.Producers {
				rename[k] = keys[i]
			}
			subs := net.Verified()
			for i := range subs {
				subs[i].Submitter = rename[subs[i].Submitter]
			}
			days <- subs
		}
	}()
	var err error
	for subs := range days {
		if err == nil {
			_, err = pgtest.InsertSubmissions(ctx, pool, subs)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE submissions`); err != nil {
		b.Fatal(err)
	}
	if err := postgres.InitDatabase(ctx, pool, rangeStart, false); err != nil {
		b.Fatal(err)
	}
}

// seedTwins seeds one database as seedDays does and copies it: two pools on
// databases holding the same rows (copying is much faster than seeding).
func seedTwins(b *testing.B, producers, batches int) (*pgxpool.Pool, *pgxpool.Pool) {
	b.Helper()
	cfg := pgtest.NewDatabase(b)
	pool := pgtest.Pool(b, cfg)
	seedDays(b, pool, producers, batches)
	pool.Close() // nothing may be connected to a database being copied
	twin := pgtest.Pool(b, pgtest.CloneDatabase(b, cfg))
	return pgtest.Pool(b, cfg), twin
}

func benchStore(b *testing.B, pool *pgxpool.Pool) *postgres.Database {
	bulk, why, err := postgres.CanBulkWritePoints(context.Background(), pool)
	if err != nil {
		b.Fatal(err)
	}
	if !bulk {
		b.Logf("bulk points path off: %s", why)
	}
	return &postgres.Database{Pool: pool, BulkPoints: bulk}
}

func benchLoop(b *testing.B, pool *pgxpool.Pool, catchUp bool) *coordinator.Engine {
	store := benchStore(b, pool)
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: benchInterval, MiniBatches: 5, UptimeDays: 90,
		Now:    func() time.Time { return rangeStart.Add(5 * 365 * 24 * time.Hour) },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if catchUp {
		eng.CatchUpAfter, eng.CatchUpChunk = 3, 72
	}
	return eng
}

// BenchmarkCatchUp is the loop's catch-up after a week's downtime with
// WORKER_MODE=none: BENCH_CATCHUP_BATCHES (default 504) batches at
// BENCH_CATCHUP_PRODUCERS (default 3,000) producers, in catch-up mode (72
// batches a transaction) and, on a second database with the same
// submissions, batch after batch. It reports both in seconds.
func BenchmarkCatchUp(b *testing.B) {
	producers := envInt(b, "BENCH_CATCHUP_PRODUCERS", 3000)
	batches := envInt(b, "BENCH_CATCHUP_BATCHES", 504)
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		stage(b, "seeding %d batches at %d producers", batches, producers)
		fast, slow := seedTwins(b, producers, batches)
		stage(b, "catching up (timed)")
		b.StartTimer()
		began := time.Now()
		if err := benchLoop(b, fast, true).Run(ctx, batches); err != nil {
			b.Fatal(err)
		}
		catchUp := time.Since(began)
		b.StopTimer()
		stage(b, "caught up in %.1f s; the copy batch after batch (timed)", catchUp.Seconds())
		began = time.Now()
		if err := benchLoop(b, slow, false).Run(ctx, batches); err != nil {
			b.Fatal(err)
		}
		oneByOne := time.Since(began)
		if x, y := digest(b, slow), digest(b, fast); x != y {
			b.Fatalf("catch-up differs from batch by batch:\n%s\n%s", x, y)
		}
		b.ReportMetric(catchUp.Seconds(), "s/catch-up")
		b.ReportMetric(oneByOne.Seconds(), "s/batch-by-batch")
		b.ReportMetric(float64(batches), "batches")
		b.ReportMetric(float64(producers), "producers")
		b.StartTimer()
	}
}

// BenchmarkRescore re-scores BENCH_RESCORE_DAYS (default 90) days at
// BENCH_RESCORE_PRODUCERS (default 1,000) producers: the database is scored
// (in catch-up mode), then one valid submission in fifty is made invalid
// across the whole range, as a verifier fix would, and the range is
// re-scored (timed). For comparison, a second database holding the changed
// submissions is scored batch after batch (timed): what re-scoring costs
// without rescore.
func BenchmarkRescore(b *testing.B) {
	producers := envInt(b, "BENCH_RESCORE_PRODUCERS", 1000)
	days := envInt(b, "BENCH_RESCORE_DAYS", 90)
	batches := days * 72
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		stage(b, "seeding %d days at %d producers", days, producers)
		// The copy gets one valid submission in fifty made invalid.
		pool, scratch := seedTwins(b, producers, batches)
		if _, err := scratch.Exec(ctx, `UPDATE submissions SET verified = false, validation_error = 'snark verification failed'
			WHERE verified AND id % 50 = 7`); err != nil {
			b.Fatal(err)
		}
		if _, err := scratch.Exec(ctx, `VACUUM ANALYZE submissions`); err != nil {
			b.Fatal(err)
		}
		stage(b, "scoring the first database (catch-up)")
		began := time.Now()
		if err := benchLoop(b, pool, true).Run(ctx, batches); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(began).Seconds(), "s/initial-catch-up")
		// The verifier fix: the same flips, in place.
		flipInPlace(b, pool, scratch)
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
		stage(b, "re-scoring (timed)")
		b.StartTimer()
		began = time.Now()
		rep, err := postgres.Rescore(ctx, pool, postgres.RescoreOptions{From: rangeStart, To: rangeStart.Add(time.Duration(batches+1) * benchInterval),
			Interval: benchInterval, UptimeDays: 90, Bulk: benchStore(b, pool).BulkPoints})
		if err != nil {
			b.Fatal(err)
		}
		rescore := time.Since(began)
		b.StopTimer()
		stage(b, "re-scored in %.1f s; scoring the second database batch after batch (timed)", rescore.Seconds())
		began = time.Now()
		if err := benchLoop(b, scratch, false).Run(ctx, batches); err != nil {
			b.Fatal(err)
		}
		oneByOne := time.Since(began)
		stage(b, "batch after batch in %.1f s; comparing the databases", oneByOne.Seconds())
		if x, y := digest(b, scratch), digest(b, pool); x != y {
			b.Fatalf("rescore differs from scoring batch by batch:\n%s\n%s", x, y)
		}
		b.ReportMetric(rescore.Seconds(), "s/rescore")
		b.ReportMetric(oneByOne.Seconds(), "s/batch-by-batch")
		b.ReportMetric(float64(rep.Batches), "batches")
		b.ReportMetric(float64(len(rep.Producers)), "producers-changed")
		b.ReportMetric(float64(rep.PointsRemoved), "points-removed")
		b.StartTimer()
	}
}

// stage tells a long benchmark's progress on stderr as it goes (b.Log
// prints only at the end), with the time and the load average.
func stage(b *testing.B, format string, args ...any) {
	b.Helper()
	raw, _ := os.ReadFile("/proc/loadavg")
	load := strings.Fields(string(raw))
	load = load[:min(3, len(load))]
	fmt.Fprintf(os.Stderr, "%s %s (load %s)\n", time.Now().UTC().Format(time.TimeOnly), fmt.Sprintf(format, args...), strings.Join(load, " "))
}

// flipInPlace copies the verification of scratch's submissions that are
// invalid into pool (the two hold the same submissions otherwise).
func flipInPlace(b *testing.B, pool, scratch *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	rows, err := scratch.Query(ctx, `SELECT submitter, submitted_at FROM submissions WHERE validation_error = 'snark verification failed'`)
	if err != nil {
		b.Fatal(err)
	}
	var who []string
	var at []time.Time
	for rows.Next() {
		var w string
		var t time.Time
		if err := rows.Scan(&w, &t); err != nil {
			b.Fatal(err)
		}
		who, at = append(who, w), append(at, t)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE submissions s SET verified = false, validation_error = 'snark verification failed'
		FROM unnest($1::text[], $2::timestamp[]) AS u(w, t) WHERE s.submitter = u.w AND s.submitted_at = u.t`, who, at); err != nil {
		b.Fatal(err)
	}
}

// digest sums a 64-bit hash of every row of the scoring tables, by natural
// keys (a snapshot of millions of rows would not fit the benchmark's memory).
func digest(b *testing.B, pool *pgxpool.Pool) string {
	b.Helper()
	var out string
	for _, q := range []string{
		`SELECT concat_ws('|', batch_start_epoch, batch_end_epoch, files_processed, file_timestamps) FROM bot_logs`,
		`SELECT concat_ws('|', block_producer_key, score, score_percent) FROM nodes`,
		`SELECT concat_ws('|', b.batch_end_epoch, n.block_producer_key) FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id JOIN nodes n ON n.id = ps.node_id`,
		`SELECT concat_ws('|', n.block_producer_key, s.value, p.file_name, b.batch_end_epoch) FROM points p JOIN bot_logs b ON b.id = p.bot_log_id JOIN nodes n ON n.id = p.node_id JOIN statehash s ON s.id = p.statehash_id`,
		`SELECT concat_ws('|', n.block_producer_key, h.score_at, h.score, h.score_percent) FROM score_history h JOIN nodes n ON n.id = h.node_id`,
		`SELECT concat_ws('|', b.batch_end_epoch, s.value, bs.weight) FROM bot_logs_statehash bs JOIN bot_logs b ON b.id = bs.bot_log_id JOIN statehash s ON s.id = bs.statehash_id`,
	} {
		var n int64
		var sum string
		if err := pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(hashtextextended(r, 0)::numeric), 0)::text FROM (`+q+`) AS t(r)`).Scan(&n, &sum); err != nil {
			b.Fatal(err)
		}
		out += fmt.Sprintf("%d:%s ", n, sum)
	}
	return out
}
