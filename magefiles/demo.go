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
	"slices"
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
		c, err := pgtest.StartCluster(false)
		if err != nil {
			return fmt.Errorf("%w\nthe demo needs the PostgreSQL server binaries: apt-get install -y postgresql (nothing needs to be running), or set POSTGRES_HOST etc. to use a server", err)
		}
		stopServer = c.Stop
		pg = c.Config
		pg.DB = "uptime_demo"
		step("PostgreSQL %s:%d is up", pg.Host, pg.Port)
	}
	created := false // only a database the demo created is dropped
	cleanup := func() {
		if created && (!keep || stopServer == nil) {
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

	step("building the coordinator (the first time Go downloads and compiles its dependencies: minutes; then seconds)")
	bin := filepath.Join(work, "coordinator")
	if err := buildWithProgress(bin, step); err != nil {
		return err
	}
	step("creating the database %s and its schema", pg.DB)
	if created, _, err = postgres.CreateDatabase(ctx, pg); err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("database %q appeared while the demo was starting; not using it", pg.DB)
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
	tw.Flush()
	return rows.Err()
}

func shorten(key string) string {
	if len(key) <= 16 {
		return key
	}
	return key[:8] + "…" + key[len(key)-6:]
}

// buildWithProgress builds the coordinator into bin with go build -v,
// reporting every few seconds how many packages were compiled so far (a
// cold cache compiles several hundred).
func buildWithProgress(bin string, step func(string, ...any)) error {
	cmd := exec.Command("go", "build", "-v", "-o", bin, "./cmd/coordinator")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var compiled int
	var other []string
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			switch {
			case !ok:
				done = true
			case strings.HasPrefix(line, "go: downloading "):
				step("downloading %s", strings.TrimPrefix(line, "go: downloading "))
			case strings.Contains(line, " ") || strings.HasPrefix(line, "#"):
				other = append(other, line) // a compiler message, not a package
			default:
				compiled++
			}
		case <-tick.C:
			step("building: %d packages compiled so far", compiled)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, strings.Join(other, "\n"))
	}
	step("built (%d packages compiled)", compiled)
	return nil
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
