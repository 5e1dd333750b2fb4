package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	site "github.com/delegation-program/uptime-coordinator/serve"
)

// The read benchmarks run on a database seeded directly with set-based SQL
// (generate_series), not by the engine (6,480 batches through the engine
// would take hours): BENCH_API_PRODUCERS producers (default 10,000) and
// BENCH_API_DAYS days of 20-minute batches (default 90: 6,480 batches).
// Each producer has a point in each batch with its own probability (60% to
// 100%), so points_summary holds ~52 million rows at the defaults;
// score_history holds a row per producer and batch (values synthetic), nodes
// the exact scores of the 90-day window, and the evidence tables the last
// day of batches (what the producer page reads).

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

const benchStart = 1_717_200_000 // 2024-06-01T00:00:00Z

func seedSQL(b *testing.B, pool *pgxpool.Pool, producers, days int) (end int64) {
	ctx := context.Background()
	batches := days * 72
	end = benchStart + int64(batches)*1200
	began := time.Now()
	// Rows go in batch by batch (generate_series nested loops, the batch
	// outermost), as the coordinator writes them, with the big tables'
	// indexes and keys dropped and built once afterwards: no sort, no
	// per-row index maintenance (score_history's producers are a LATERAL
	// series of the batch, or the planner may put them outermost and lay
	// the table out by producer). score_history's foreign key comes back NOT
	// VALID (the rows are made from nodes' ids; checking 64.8 million of
	// them takes minutes and changes no read).
	steps := []struct{ name, sql string }{
		{"drop indexes", `DROP INDEX uq_ps_bot_log_node; DROP INDEX IF EXISTS idx_points_summary_node_bot_log;
			DROP INDEX uq_sh_node_score_at; DROP INDEX idx_score_history_score_at;
			ALTER TABLE score_history DROP CONSTRAINT fk_nodes; ALTER TABLE score_history DROP CONSTRAINT score_history_pkey`},
		{"bot_logs", fmt.Sprintf(`INSERT INTO bot_logs (files_processed, file_timestamps, batch_start_epoch, batch_end_epoch, processing_time)
			VALUES (-1, to_timestamp(%[1]d), %[1]d, %[1]d, 0);
			INSERT INTO bot_logs (files_processed, file_timestamps, batch_start_epoch, batch_end_epoch, processing_time)
			SELECT %[2]d * 3, to_timestamp(%[1]d + i * 1200), %[1]d + i * 1200, %[1]d + (i + 1) * 1200, 0.5
			FROM generate_series(0, %[3]d - 1) i`, benchStart, producers, batches)},
		{"nodes", fmt.Sprintf(`INSERT INTO nodes (block_producer_key, updated_at, application_status)
			SELECT 'B62q' || substr(translate(md5(i::text) || md5('k' || i), '0', 'z'), 1, 51), now(),
				CASE WHEN i %% 3 = 0 THEN true WHEN i %% 5 = 0 THEN false END
			FROM generate_series(1, %d) i`, producers)},
		// The ids are contiguous (one INSERT each into fresh tables).
		{"points_summary", `INSERT INTO points_summary (bot_log_id, node_id)
			SELECT b, n FROM generate_series((SELECT min(id) FROM bot_logs WHERE files_processed > -1), (SELECT max(id) FROM bot_logs)) b
			CROSS JOIN generate_series((SELECT min(id) FROM nodes), (SELECT max(id) FROM nodes)) n
			WHERE abs(hashint8(b::bigint * 1000003 + n)) % 100 < 60 + n % 41`},
		{"points_summary index", `CREATE UNIQUE INDEX uq_ps_bot_log_node ON points_summary (bot_log_id, node_id)`},
		{"score_history", fmt.Sprintf(`INSERT INTO score_history (node_id, score_at, score, score_percent)
			SELECT n, to_timestamp(%[1]d + (b - b0.id + 1) * 1200) AT TIME ZONE 'UTC', (b * (60 + n %% 41) / 100)::int %% 6480,
				((60 + n %% 41) - (b %% 7))::numeric(5,2)
			FROM (SELECT min(id) AS id FROM bot_logs WHERE files_processed > -1) b0
			CROSS JOIN generate_series(b0.id, (SELECT max(id) FROM bot_logs)) b
			CROSS JOIN LATERAL generate_series((SELECT min(id) FROM nodes), (SELECT max(id) FROM nodes) + 0 * b) n`, benchStart)},
		{"score_history keys", `ALTER TABLE score_history ADD CONSTRAINT score_history_pkey PRIMARY KEY (id);
			CREATE UNIQUE INDEX uq_sh_node_score_at ON score_history (node_id, score_at);
			CREATE INDEX idx_score_history_score_at ON score_history (score_at);
			ALTER TABLE score_history ADD CONSTRAINT fk_nodes FOREIGN KEY (node_id) REFERENCES nodes (id) NOT VALID`},
		{"scores", fmt.Sprintf(`WITH c AS (SELECT ps.node_id, count(*) AS n FROM points_summary ps JOIN bot_logs b ON b.id = ps.bot_log_id
				WHERE b.batch_start_epoch >= %[1]d - %[2]d * 86400 GROUP BY ps.node_id)
			UPDATE nodes SET score = coalesce(c.n, 0), score_percent = trunc(coalesce(c.n, 0)::numeric * 100 / %[3]d, 2)
			FROM nodes n2 LEFT JOIN c ON c.node_id = n2.id WHERE nodes.id = n2.id;
			INSERT INTO coordinator_scoreboard (window_end_epoch, uptime_days) VALUES (%[1]d, %[2]d)`, end, days, batches)},
		{"evidence", fmt.Sprintf(`INSERT INTO evidence_producers (block_producer_key) SELECT block_producer_key FROM nodes ORDER BY id;
			INSERT INTO batch_evidence_summary (bot_log_id, submissions, valid, unverified, invalid, producers, point_producers,
				off_chain_producers, invalid_producers, unverified_producers)
			SELECT id, %[2]d * 4, %[2]d * 3, 0, %[2]d, %[2]d, %[2]d * 8 / 10, %[2]d / 10, %[2]d / 10, 0
			FROM bot_logs WHERE files_processed > -1 AND batch_end_epoch > %[1]d - 86400;
			INSERT INTO batch_evidence (bot_log_id, producer_id, outcome, submissions, valid, unverified, invalid_by_class)
			SELECT b.id, e.id, CASE WHEN ps.node_id IS NOT NULL THEN 'point' WHEN n.id %% 4 = 0 THEN 'invalid' ELSE 'off_chain' END::evidence_outcome,
				4, CASE WHEN n.id %% 4 = 0 AND ps.node_id IS NULL THEN 0 ELSE 4 END, 0,
				CASE WHEN n.id %% 4 = 0 AND ps.node_id IS NULL THEN '{"snark_invalid": 4}'::jsonb END
			FROM bot_logs b CROSS JOIN nodes n JOIN evidence_producers e ON e.block_producer_key = n.block_producer_key
			LEFT JOIN points_summary ps ON ps.bot_log_id = b.id AND ps.node_id = n.id
			WHERE b.files_processed > -1 AND b.batch_end_epoch > %[1]d - 86400 AND (ps.node_id IS NOT NULL OR n.id %% 2 = 0)`, end, producers)},
		{"analyze", `VACUUM ANALYZE`},
	}
	// One session with room to sort in memory: the index builds and the
	// scores' aggregation otherwise spill to disk in many passes.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '1GB'; SET work_mem = '256MB'`); err != nil {
		b.Fatal(err)
	}
	for _, st := range steps {
		t0 := time.Now()
		if _, err := conn.Exec(ctx, st.sql); err != nil {
			b.Fatalf("seeding %s: %v", st.name, err)
		}
		b.Logf("seeded %s in %s", st.name, time.Since(t0).Round(time.Millisecond))
	}
	var rows int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM points_summary`).Scan(&rows); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d producers, %d batches, %d points_summary rows in %s", producers, batches, rows, time.Since(began).Round(time.Second))
	return end
}

// benchDatabase is a throwaway database seeded for the benchmark, or, with
// BENCH_API_KEEP_DB=name, the database of that name on the test server
// (TEST_DATABASE_URL), seeded on first use and kept, so that repeated runs
// skip the seed (each run's stream measurement adds a batch to it).
func benchDatabase(b *testing.B, producers, days int) (config.Postgres, *pgxpool.Pool) {
	name := os.Getenv("BENCH_API_KEEP_DB")
	if name == "" {
		cfg := pgtest.NewDatabase(b)
		pool := pgtest.Pool(b, cfg)
		seedSQL(b, pool, producers, days)
		return cfg, pool
	}
	ctx := context.Background()
	cfg := pgtest.Server(b)
	admin := pgtest.Pool(b, cfg)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		b.Fatal(err)
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			b.Fatal(err)
		}
	}
	cfg.DB = name
	pool := pgtest.Pool(b, cfg)
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	var seeded bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM coordinator_scoreboard)`).Scan(&seeded); err != nil {
		b.Fatal(err)
	}
	if !seeded {
		seedSQL(b, pool, producers, days)
	}
	return cfg, pool
}

func p95(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[(len(ds)*95+99)/100-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkServe measures the read API at scale: the load of the points
// into memory (time, heap), leaderboards of every standard window and
// arbitrary ones (p95 over requests once computed, and of the first request
// after a batch), the producer's API answer and web page (p95), and the
// delay from a batch's commit to its event at 1,000 stream clients.
func BenchmarkServe(b *testing.B) {
	producers, days := envInt(b, "BENCH_API_PRODUCERS", 10000), envInt(b, "BENCH_API_DAYS", 90)
	cfg, pool := benchDatabase(b, producers, days)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reader := &api.Reader{Pool: pool, UptimeDays: days}
	hub := &api.Hub{ConnString: cfg.ConnString(""), Reader: reader, Logger: logger}
	// As serve: the leaderboards of the standard windows are computed after
	// each batch's notification.
	warm := make(chan struct{}, 1)
	hub.OnBatch = func(context.Context, api.Batch) {
		select {
		case warm <- struct{}{}:
		default:
		}
	}
	go func() { _ = hub.Run(ctx) }()
	go reader.WarmLoop(ctx, warm)
	<-hub.Ready()
	ts := httptest.NewServer(site.Handler(reader, hub, logger, 0))
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	fetch := func(url string) time.Duration {
		t0 := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d", url, resp.StatusCode)
		}
		return time.Since(t0)
	}
	var keys []string
	rows, err := pool.Query(ctx, `SELECT block_producer_key FROM nodes ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		keys = append(keys, k)
	}
	rows.Close()

	b.Run("points/load", func(b *testing.B) {
		// A full load by a fresh reader, as serve does at start: its time
		// and the heap it keeps. (b.N is ignored: one load per run.)
		var log strings.Builder // its summary of what it loaded
		r := &api.Reader{Pool: pool, UptimeDays: days, Logger: slog.New(slog.NewTextHandler(&log, nil))}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		if err := r.Reload(ctx); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(r)
		b.Log(strings.TrimSpace(log.String()))
		b.ReportMetric(took.Seconds(), "load-s")
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MB")
	})
	for _, w := range []string{"24h", "7d", "30d", "90d", "45d", "60d"} {
		b.Run("leaderboard/window="+w, func(b *testing.B) {
			url := ts.URL + "/api/v1/leaderboard?limit=100&window=" + w
			fetch(url)
			var ds []time.Duration
			b.ResetTimer()
			for i := range b.N {
				ds = append(ds, fetch(url+"&offset="+strconv.Itoa(100*(i%100))))
			}
			b.ReportMetric(ms(p95(ds)), "p95-ms")
		})
	}
	// The first request of a window after a batch lands. "absorbed": once
	// serve has taken the batch in (its notification extended the points and
	// computed the standard windows), the request computes its window from
	// memory. "at-commit": the request is sent as the batch commits, and so
	// also waits for the batch to be taken in.
	for _, w := range []string{"45d", "60d"} {
		for _, at := range []string{"absorbed", "at-commit"} {
			b.Run("leaderboard-after-batch/"+at+"/window="+w, func(b *testing.B) {
				url := ts.URL + "/api/v1/leaderboard?limit=100&window=" + w
				var ds []time.Duration
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					id, err := commitBatch(ctx, pool)
					if err != nil {
						b.Fatal(err)
					}
					if at == "absorbed" {
						for {
							board, err := reader.Leaderboard(ctx, days)
							if err != nil {
								b.Fatal(err)
							}
							if board.Batch.ID == id {
								break
							}
						}
					}
					b.StartTimer()
					ds = append(ds, fetch(url))
				}
				b.ReportMetric(ms(p95(ds)), "p95-ms")
				b.ReportMetric(ms(slices.Max(ds)), "max-ms")
			})
		}
	}
	for _, page := range []struct{ name, path string }{{"producer/api", "/api/v1/producers/"}, {"producer/page", "/producers/"}} {
		b.Run(page.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			var ds []time.Duration
			b.ResetTimer()
			for range b.N {
				ds = append(ds, fetch(ts.URL+page.path+keys[rng.IntN(len(keys))]))
			}
			b.ReportMetric(ms(p95(ds)), "p95-ms")
		})
	}
	b.Run("stream/clients=1000", func(b *testing.B) {
		clients := envInt(b, "BENCH_API_CLIENTS", 1000)
		for range b.N {
			streamRound(b, ts.URL, pool, hub, clients)
		}
	})
}

// streamRound connects the clients, commits a batch (as the coordinator
// would: rows and pg_notify in one transaction) and reports the delay from
// the commit to each client's receipt of the event.
func streamRound(b *testing.B, base string, pool *pgxpool.Pool, hub *api.Hub, clients int) {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	got := make(chan time.Time, clients)
	var wg sync.WaitGroup
	for hub.Clients() > 0 { // the previous round's clients are gone
		time.Sleep(5 * time.Millisecond)
	}
	for range clients {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/stream", nil)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "event: batch") {
					got <- time.Now()
					return
				}
			}
		})
	}
	for hub.Clients() < clients {
		time.Sleep(5 * time.Millisecond)
	}
	b.StartTimer()
	if _, err := commitBatch(ctx, pool); err != nil {
		b.Fatal(err)
	}
	committed := time.Now()
	var delays []time.Duration
	timeout := time.After(30 * time.Second)
	for len(delays) < clients {
		select {
		case at := <-got:
			delays = append(delays, at.Sub(committed))
		case <-timeout:
			b.Fatalf("%d of %d clients got the event within 30 s", len(delays), clients)
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	b.ReportMetric(ms(p95(delays)), "p95-ms")
	b.ReportMetric(ms(slices.Max(delays)), "max-ms")
	b.StartTimer()
}

// commitBatch commits a batch after the latest as the coordinator would:
// its bot_logs row, a point for 90% of the producers, their score_history
// rows and evidence, and pg_notify, in one transaction.
func commitBatch(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO bot_logs (files_processed, file_timestamps, batch_start_epoch, batch_end_epoch, processing_time)
		SELECT files_processed, to_timestamp(batch_end_epoch), batch_end_epoch, batch_end_epoch + 1200, 0.5
		FROM bot_logs ORDER BY batch_end_epoch DESC LIMIT 1 RETURNING id`).Scan(&id); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO points_summary (bot_log_id, node_id) SELECT $1, id FROM nodes WHERE id % 10 <> 0`, id); err != nil {
		return 0, err
	}
	// Its score_history rows and evidence, which serve reads when it
	// takes the batch in.
	if _, err := tx.Exec(ctx, `INSERT INTO score_history (node_id, score_at, score, score_percent)
		SELECT id, (SELECT to_timestamp(batch_end_epoch) AT TIME ZONE 'UTC' FROM bot_logs WHERE id = $1), score, score_percent
		FROM nodes WHERE score IS NOT NULL`, id); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO batch_evidence_summary (bot_log_id, submissions, valid, unverified, invalid, producers,
			point_producers, off_chain_producers, invalid_producers, unverified_producers)
		SELECT $1, count(*) * 4, count(*) * 4, 0, 0, count(*), count(*) FILTER (WHERE id % 10 <> 0), count(*) FILTER (WHERE id % 10 = 0), 0, 0
		FROM nodes`, id); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO batch_evidence (bot_log_id, producer_id, outcome, submissions, valid, unverified)
		SELECT $1, e.id, CASE WHEN n.id % 10 <> 0 THEN 'point' ELSE 'off_chain' END::evidence_outcome, 4, 4, 0
		FROM nodes n JOIN evidence_producers e ON e.block_producer_key = n.block_producer_key`, id); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify('uptime_batch', $1)`, strconv.FormatInt(id, 10)); err != nil {
		return 0, err
	}
	return id, tx.Commit(ctx)
}
