//go:build mage

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
	"github.com/delegation-program/uptime-coordinator/workers/verifier"
)

// Demo runs the main job on an embedded default: a throwaway PostgreSQL (or the server POSTGRES_* point at), a synthetic network with its block files, the real coordinator verifying with the bundled verifier as subprocesses until it has caught up; then the leaderboard and a per-batch summary. Environment: PRODUCERS (default 300), HOURS (default 4), KEEP=1 (keep the database and wait for Ctrl-C, printing how to connect).
func Demo(ctx context.Context) error {
	if err := config.LoadDotEnv(""); err != nil {
		return err
	}
	params, err := config.LoadTasks(config.Environment)
	if err != nil {
		return err
	}
	producers, hours, keep := params.Producers, params.Hours, params.Keep
	began := time.Now()
	step := func(format string, args ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}

	work, err := os.MkdirTemp("", "uptime-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var pg config.Postgres
	var stopServer func()
	if host, _ := config.Environment("POSTGRES_HOST"); host != "" {
		if pg, err = tasks.Postgres(); err != nil {
			return err
		}
		pg.DB = "uptime_demo"
		step("using the PostgreSQL server at %s:%d (POSTGRES_*), database %s", pg.Host, pg.Port, pg.DB)
	} else {
		step("starting a throwaway PostgreSQL from the system's binaries")
		c, err := pgtest.StartCluster(false)
		if err != nil {
			return fmt.Errorf("%w\nthe demo needs the PostgreSQL server binaries: apt-get install -y postgresql (nothing needs to be running), or set POSTGRES_HOST etc. to use a server", err)
		}
		stopServer = c.Stop
		pg = c.Config
		pg.DB = "uptime_demo"
		step("PostgreSQL %s:%d is up", pg.Host, pg.Port)
	}
	cleanup := func() {
		if !keep || stopServer == nil {
			if _, err := postgres.DropDatabase(context.Background(), pg); err != nil && !keep {
				fmt.Fprintln(os.Stderr, "dropping the demo database:", err)
			}
		}
		if stopServer != nil {
			stopServer()
		}
	}
	defer func() {
		if !keep {
			cleanup()
		}
	}()

	step("building the coordinator")
	bin := filepath.Join(work, "coordinator")
	if err := sh("go", "build", "-o", bin, "./cmd/coordinator"); err != nil {
		return err
	}
	if err := tasks.CreateDatabase(ctx, pg, os.Stdout); err != nil {
		return err
	}

	end := time.Now().UTC().Truncate(20 * time.Minute).Add(-20 * time.Minute)
	start := end.Add(-time.Duration(hours) * time.Hour)
	seed := params.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	step("generating a network of %d producers over %d hours (%s - %s UTC), SEED=%d (set it to get the same network again)",
		producers, hours, start.Format("15:04"), end.Format("15:04"), seed)
	net := synthnet.Generate(synthnet.Params{Seed: seed, Producers: producers, Start: start, Duration: end.Sub(start)})
	blocks := filepath.Join(work, "blocks")
	if err := verifier.WriteBlockFiles(blocks, net.Blocks); err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, pg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := postgres.InsertSubmissions(ctx, pool, net.Unverified())
	if err != nil {
		return err
	}
	step("the collector stored %d submissions and %d blocks; none verified yet", n, len(net.Blocks))
	if err := tasks.InitDatabase(ctx, pg, strconv.FormatInt(start.Unix(), 10), nil, false, os.Stdout); err != nil {
		return err
	}

	batches := hours * 3
	step("running the coordinator: %d batches of 20 minutes, 5 verifier subprocesses each", batches)
	cmd := exec.CommandContext(ctx, bin, "run", "--batches", strconv.Itoa(batches))
	cmd.Env = append(os.Environ(), pgtest.Env(pg)...)
	cmd.Env = append(cmd.Env, "WORKER_MODE=process", "WORKER_COMMAND="+bin+" verify", "BLOCKS_DIR="+blocks,
		"IGNORE_APPLICATION_STATUS=1", "METRICS_ADDR=", "LOG_LEVEL=info", "SURVEY_INTERVAL_MINUTES=20", "MINI_BATCH_NUMBER=5")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	times := map[int64]float64{}
	done := 0
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg       string    `json:"msg"`
			WindowEnd time.Time `json:"window_end"`
			Valid     int       `json:"valid"`
			Points    int       `json:"points"`
			Seconds   float64   `json:"batch_seconds"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "batch committed" {
			continue
		}
		done++
		times[line.WindowEnd.Unix()] = line.Seconds
		step("batch %2d/%d up to %s committed: %d valid submissions, %d points, %.2fs", done, batches,
			line.WindowEnd.UTC().Format("15:04"), line.Valid, line.Points, line.Seconds)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("the coordinator failed: %w\n%s", err, stderr.String())
	}
	step("caught up")

	if err := printReport(ctx, pool, times, os.Stdout); err != nil {
		return err
	}
	fmt.Printf("\nFinished in %.0f s. Where to look next: README.md (configuration, scoring, differences from the original),\n"+
		"`go tool mage -l` (database tasks, tests, benchmarks), and the tables bot_logs, points, nodes and score_history.\n", time.Since(began).Seconds())
	if keep {
		fmt.Printf("\nKEEP=1: the database is kept. Connect with:\n  psql 'host=%s port=%d dbname=%s user=%s'\n", pg.Host, pg.Port, pg.DB, pg.User)
		if stopServer != nil {
			fmt.Println("Press Ctrl-C to stop the throwaway server and clean up.")
			sig, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			<-sig.Done()
			stop()
			cleanup()
		}
	}
	return nil
}

func printReport(ctx context.Context, pool *pgxpool.Pool, times map[int64]float64, w io.Writer) error {
	rows, err := pool.Query(ctx, `SELECT block_producer_key, score, score_percent::text FROM nodes
		WHERE score IS NOT NULL ORDER BY nodes.score_percent DESC, nodes.score DESC, block_producer_key LIMIT 15`)
	if err != nil {
		return fmt.Errorf("reading the leaderboard: %w", err)
	}
	type entry struct {
		key     string
		score   int
		percent string
	}
	board, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
		var e entry
		return e, r.Scan(&e.key, &e.score, &e.percent)
	})
	if err != nil {
		return fmt.Errorf("reading the leaderboard: %w", err)
	}
	var total, zero int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE score IS NOT NULL), count(*) FILTER (WHERE score = 0) FROM nodes`).Scan(&total, &zero); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nLeaderboard (top %d of %d scored producers; %d at zero):\n", len(board), total, zero)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rank\tproducer\tpoints\tscore %\t")
	for i, e := range board {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t\n", i+1, shorten(e.key), e.score, e.percent)
	}
	tw.Flush()

	rows, err = pool.Query(ctx, `SELECT b.batch_end_epoch,
		(SELECT count(*) FROM submissions s WHERE s.submitted_at >= to_timestamp(b.batch_start_epoch) AT TIME ZONE 'UTC'
			AND s.submitted_at < to_timestamp(b.batch_end_epoch) AT TIME ZONE 'UTC'),
		b.files_processed, (SELECT count(*) FROM points p WHERE p.bot_log_id = b.id),
		(SELECT count(*) FROM points_summary ps WHERE ps.bot_log_id = b.id), b.processing_time
		FROM bot_logs b WHERE b.files_processed > -1 ORDER BY b.batch_end_epoch`)
	if err != nil {
		return fmt.Errorf("reading the batches: %w", err)
	}
	defer rows.Close()
	fmt.Fprintln(w, "\nBatches:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "window end (UTC)\tsubmissions\tvalid\tpoints\tproducers\tverification s\tbatch s\t")
	for rows.Next() {
		var end, subs, valid, points, producers int64
		var verification float64
		if err := rows.Scan(&end, &subs, &valid, &points, &producers, &verification); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t\n", time.Unix(end, 0).UTC().Format("2006-01-02 15:04"),
			subs, valid, points, producers, verification, times[end])
	}
	tw.Flush()
	return rows.Err()
}

func shorten(key string) string {
	if len(key) <= 16 {
		return key
	}
	return key[:8] + "…" + key[len(key)-6:]
}
