package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// DemoCmd is "magetasks demo": the work of "go tool mage demo" after the
// magefile has built the coordinator.
type DemoCmd struct {
	Coordinator string `required:"" type:"existingfile" help:"The coordinator binary to run."`
	Began       int64  `help:"When the mage target began (unix milliseconds), so that the elapsed times go on from the build's."`
	Database    string `default:"uptime_demo" help:"The database the demo creates (and drops at the end)."`

	end time.Time // the end of the last batch; zero: the last 20-minute boundary but one
}

// Run runs the demo with its parameters from the environment (PRODUCERS,
// HOURS, SEED, KEEP; POSTGRES_* to use a server instead of a throwaway one).
func (d *DemoCmd) Run(ctx context.Context) error {
	if err := config.LoadDotEnv(""); err != nil {
		return err
	}
	params, err := config.LoadTasks(config.Environment)
	if err != nil {
		return err
	}
	c := clock{began: time.Now(), out: os.Stdout}
	if d.Began > 0 {
		c.began = time.UnixMilli(d.Began)
	}
	return d.run(ctx, params, c)
}

// run runs the demo, printing to c.out.
func (d *DemoCmd) run(ctx context.Context, params config.Tasks, c clock) (err error) {
	out := c.out
	producers, hours, keep := params.Producers, params.Hours, params.Keep
	step := c.step

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
		pg.DB = d.Database
		step("using the PostgreSQL server at %s:%d (POSTGRES_*), database %s", pg.Host, pg.Port, pg.DB)
		exists, err := postgres.DatabaseExists(ctx, pg)
		if err != nil {
			return err
		}
		if exists {
			// Never touch, let alone drop, a database the demo did not create.
			return fmt.Errorf("database %q already exists on %s:%d and the demo did not create it: it would write to it and drop it, so it stops here; drop it yourself if it is a leftover demo (POSTGRES_DB=%s coordinator drop-database), or unset POSTGRES_HOST to use a throwaway server",
				pg.DB, pg.Host, pg.Port, pg.DB)
		}
	} else {
		step("starting a throwaway PostgreSQL from the system's binaries")
		cl, err := pgtest.StartCluster(false)
		if err != nil {
			return fmt.Errorf("%w\nthe demo needs the PostgreSQL server binaries: apt-get install -y postgresql (nothing needs to be running), or set POSTGRES_HOST etc. to use a server", err)
		}
		stopServer = cl.Stop
		pg = cl.Config
		pg.DB = d.Database
		step("PostgreSQL %s:%d is up", pg.Host, pg.Port)
	}
	created := false // only a database the demo created is dropped
	kept := false
	defer func() {
		if kept {
			return
		}
		if ctx.Err() != nil {
			step("interrupted: dropping the demo database and stopping the throwaway PostgreSQL (a few seconds)")
		}
		if created {
			if _, derr := postgres.DropDatabase(context.Background(), pg); derr != nil {
				err = errors.Join(err, fmt.Errorf("dropping the demo database %q: %w", pg.DB, derr))
			}
		}
		if stopServer != nil {
			stopServer()
		}
	}()

	step("creating the database %s and its schema", pg.DB)
	if created, _, err = postgres.CreateDatabase(ctx, pg); err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("database %q appeared while the demo was starting; not using it", pg.DB)
	}

	end := d.end
	if end.IsZero() {
		end = time.Now().UTC().Truncate(20 * time.Minute).Add(-20 * time.Minute)
	}
	start := end.Add(-time.Duration(hours) * time.Hour)
	seed := params.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	step("generating a network of %d producers over %d hours (%s - %s UTC), SEED=%d (set it to get the same network again)",
		producers, hours, start.Format("15:04"), end.Format("15:04"), seed)
	net := synthnet.Generate(synthnet.Params{Seed: seed, Producers: producers, Start: start, Duration: end.Sub(start)})
	blocks := filepath.Join(work, "blocks")
	if err := synthnet.WriteBlockFiles(blocks, net.Blocks); err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, pg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := pgtest.InsertSubmissions(ctx, pool, net.Unverified())
	if err != nil {
		return err
	}
	step("the collector stored %d submissions and %d blocks; none verified yet", n, len(net.Blocks))
	if err := tasks.InitDatabaseAt(ctx, pg, start, false, out); err != nil {
		return err
	}

	batches := hours * 3
	step("running the coordinator: %d batches of 20 minutes, 5 verifier subprocesses each", batches)
	times, err := runCoordinator(ctx, d.Coordinator, pg, blocks, batches, step)
	if err != nil {
		return err
	}
	step("caught up")

	if err := printReport(ctx, pool, times, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nFinished in %.0f s. Where to look next: README.md, docs/ (configuration, scoring, differences from the original),\n"+
		"`go tool mage -l` (database tasks, tests, benchmarks), and the tables bot_logs, points, nodes and score_history.\n", time.Since(c.began).Seconds())
	if keep {
		fmt.Fprintf(out, "\nKEEP=1: the database is kept. Connect with:\n  psql 'host=%s port=%d dbname=%s user=%s'\n", pg.Host, pg.Port, pg.DB, pg.User)
		if stopServer == nil {
			kept = true // on the given server; the deferred clean-up leaves it
			return nil
		}
		fmt.Fprintln(out, "Press Ctrl-C to stop the throwaway server and clean up.")
		<-ctx.Done()
	}
	return nil
}

// runCoordinator runs "coordinator run" on the database until it has
// committed batches batches, printing each commit, and returns each batch's
// duration by its window end (unix seconds).
func runCoordinator(ctx context.Context, bin string, pg config.Postgres, blocks string, batches int, step func(string, ...any)) (map[int64]float64, error) {
	cmd := exec.CommandContext(ctx, bin, "run", "--batches", strconv.Itoa(batches))
	// Stopped like a pod: SIGTERM, then the coordinator stops its verifiers.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(os.Environ(), pgtest.Env(pg)...)
	cmd.Env = append(cmd.Env, "WORKER_MODE=process", "WORKER_COMMAND="+bin+" verify", "BLOCKS_DIR="+blocks,
		"IGNORE_APPLICATION_STATUS=1", "METRICS_ADDR=", "LOG_LEVEL=info", "LOG_FORMAT=json",
		"SURVEY_INTERVAL_MINUTES=20", "MINI_BATCH_NUMBER=5")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
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
		return nil, fmt.Errorf("the coordinator failed: %w\n%s", err, stderr.String())
	}
	if done != batches {
		return nil, fmt.Errorf("the coordinator committed %d batches, not %d\n%s", done, batches, stderr.String())
	}
	return times, nil
}

func printReport(ctx context.Context, pool *pgxpool.Pool, times map[int64]float64, w io.Writer) error {
	rows, err := pool.Query(ctx, `SELECT block_producer_key, score, score_percent::float8 FROM nodes
		WHERE score IS NOT NULL ORDER BY nodes.score_percent DESC, nodes.score DESC, block_producer_key`)
	if err != nil {
		return fmt.Errorf("reading the leaderboard: %w", err)
	}
	board, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
		var e entry
		return e, r.Scan(&e.key, &e.score, &e.percent)
	})
	if err != nil {
		return fmt.Errorf("reading the leaderboard: %w", err)
	}
	printLeaderboard(w, board, 10)
	printHistogram(w, board)

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
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
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
	if err := tw.Flush(); err != nil {
		return err
	}
	return rows.Err()
}

func shorten(key string) string {
	if len(key) <= 16 {
		return key
	}
	return key[:8] + "…" + key[len(key)-6:]
}

// entry is one scored producer of the leaderboard.
type entry struct {
	key     string
	score   int
	percent float64
}

// printLeaderboard prints the top n and the bottom n of board (sorted best
// first): the bottom is where the lagging, offline and invalid producers are.
func printLeaderboard(w io.Writer, board []entry, n int) {
	fmt.Fprintf(w, "\nLeaderboard: %d scored producers (top %d and bottom %d):\n", len(board), n, n)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rank\tproducer\tpoints\tscore %\t")
	for i, e := range board {
		if i == n && len(board) > 2*n {
			fmt.Fprintln(tw, "…\t…\t…\t…\t")
		}
		if i < n || i >= len(board)-n {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.2f\t\n", i+1, shorten(e.key), e.score, e.percent)
		}
	}
	tw.Flush()
}

// printHistogram prints how many producers have a score in each tenth of
// 0-100% (the last bucket includes 100%).
func printHistogram(w io.Writer, board []entry) {
	var buckets [10]int
	for _, e := range board {
		buckets[min(9, max(0, int(e.percent/10)))]++
	}
	most := slices.Max(buckets[:])
	fmt.Fprintln(w, "\nScores (producers per 10% of score):")
	for i, n := range buckets {
		bar := 0
		if most > 0 {
			bar = (n*40 + most - 1) / most
		}
		fmt.Fprintf(w, "%3d-%3d%% %5d %s\n", i*10, i*10+10, n, strings.Repeat("#", bar))
	}
}
