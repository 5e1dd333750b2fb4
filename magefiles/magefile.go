//go:build mage

// Database tasks, tests, benchmarks and the demo of the uptime validator
// coordinator. Run them without installing mage: go tool mage <target>. The
// database targets read POSTGRES_* from the environment or a .env file.
//
// This file imports only the standard library, so that mage compiles it in
// seconds even on a cold build cache: the targets' work is done by
// subprocesses (go test, and internal/magetasks for the database tasks and
// the demo, which read their configuration through the config package),
// built by buildWithProgress with visible progress.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CreateDatabase creates POSTGRES_DB if missing and applies the schema migrations (idempotent).
func CreateDatabase(ctx context.Context) error { return magetasks(ctx, "create-database") }

// InitDatabase inserts the starting bot_logs row. Environment: BATCH_END_EPOCH (unix seconds, "YYYY-MM-DD HH:MM:SS" UTC or RFC 3339; default now), MINS_AGO (start N minutes ago instead), OVERRIDE_EMPTY=1 (insert even when bot_logs has rows).
func InitDatabase(ctx context.Context) error { return magetasks(ctx, "init-database") }

// DropDatabase drops POSTGRES_DB.
func DropDatabase(ctx context.Context) error { return magetasks(ctx, "drop-database") }

// CreateROUser creates POSTGRES_RO_USER (password POSTGRES_RO_PASSWORD) with CONNECT, USAGE and SELECT on every table, now and later (idempotent).
func CreateROUser(ctx context.Context) error { return magetasks(ctx, "create-ro-user") }

// Cleanup deletes data older than <days> days: go tool mage cleanup 180.
func Cleanup(ctx context.Context, days int) error {
	return magetasks(ctx, "cleanup", strconv.Itoa(days))
}

// Demo runs the main job on an embedded default: a throwaway PostgreSQL (or the server POSTGRES_* point at, in a database uptime_demo it creates and drops, never one it did not create), a synthetic network with its block files, the real coordinator verifying with the bundled verifier as subprocesses until it has caught up; then the top and bottom of the leaderboard, a histogram of scores and a per-batch summary. Environment: PRODUCERS (default 300), HOURS (default 4), SEED (the same seed gives the same network and scores), KEEP=1 (keep the database and wait for Ctrl-C, printing how to connect).
func Demo(ctx context.Context) error {
	began := time.Now()
	// The smallest coordinator that runs the demo: process mode, PostgreSQL.
	step(began, "building the coordinator (-tags '%s') and the demo (the first time Go downloads and compiles its dependencies: %s on 2 cores; then seconds)", demoTags, firstBuild)
	dir := filepath.Join("bin", "mage")
	if err := buildWithProgress(ctx, began, dir, []string{"-tags", demoTags}, "./cmd/coordinator", "./internal/magetasks"); err != nil {
		return err
	}
	return run(ctx, filepath.Join(dir, "magetasks"), "demo", "--coordinator", filepath.Join(dir, "coordinator"),
		"--began", strconv.FormatInt(began.UnixMilli(), 10))
}

// demoTags leave out of the demo's coordinator what only other modes need.
const demoTags = "nokubernetes nocassandra"

// firstBuild is how long the first build takes on a cold cache (measured on
// 2 cores, docs/performance.md).
const firstBuild = "about 3 minutes"

// magetasks builds internal/magetasks and runs it with args.
func magetasks(ctx context.Context, args ...string) error {
	began := time.Now()
	dir := filepath.Join("bin", "mage")
	if err := buildWithProgress(ctx, began, dir, nil, "./internal/magetasks"); err != nil {
		return err
	}
	return run(ctx, filepath.Join(dir, "magetasks"), args...)
}

// run runs name with args. On Ctrl-C it is interrupted, not killed: the demo
// then drops its database and stops its throwaway server.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

// step prints a line with the seconds elapsed since began.
func step(began time.Time, format string, args ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

// buildWithProgress builds pkgs into dir with go build -v, printing what Go
// downloads and, every 10 seconds while it compiles, how many packages it has
// compiled out of the dependency graph (a cold cache compiles them all; a
// warm one none, and the build takes a second or two).
func buildWithProgress(ctx context.Context, began time.Time, dir string, flags []string, pkgs ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	list := exec.CommandContext(ctx, "go", append(append([]string{"list", "-deps"}, flags...), pkgs...)...)
	list.Stderr = os.Stderr // "go: downloading ..." on a fresh machine
	deps, err := list.Output()
	if err != nil {
		return fmt.Errorf("go list: %w", err)
	}
	total := strings.Count(string(deps), "\n")
	args := append(append([]string{"build", "-v", "-o", dir + string(filepath.Separator)}, flags...), pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var compiled int
	var last string
	var other []string
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			switch {
			case !ok:
				done = true
			case strings.HasPrefix(line, "go: downloading "):
				step(began, "downloading %s", strings.TrimPrefix(line, "go: downloading "))
			case strings.Contains(line, " ") || strings.HasPrefix(line, "#"):
				other = append(other, line) // a compiler message, not a package
			default:
				compiled++
				last = line
			}
		case <-tick.C:
			if last == "" {
				step(began, "building: checking the build cache and linking")
			} else {
				step(began, "building: %d of %d packages compiled (last: %s)", compiled, total, last)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, strings.Join(other, "\n"))
	}
	if compiled > 0 {
		step(began, "built (%d of %d packages compiled, the others were cached)", compiled, total)
	}
	return nil
}

// Test runs the whole test suite, as CI does: go vet; builds the Kubernetes control plane the worker tests run against (tools/kube/build.sh: ~9 min the first time, seconds after); starts one throwaway Cassandra 5.0 for every package (tools/cassandra/start.sh; needs java and mvn); then every test, against real PostgreSQL (a throwaway cluster from the system's binaries unless TEST_DATABASE_URL is set).
func Test() error {
	if err := sh("go", "vet", "./..."); err != nil {
		return err
	}
	if err := sh("bash", "tools/kube/build.sh"); err != nil {
		return err
	}
	env, stop, err := startCassandra()
	if err != nil {
		return err
	}
	defer stop()
	cmd := exec.Command("go", "test", "-count=1", "-timeout", "60m", "./...")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test: %w", err)
	}
	// The race detector where it is affordable: the engine, the worker
	// contract, processes and verifier, configuration, logging, retries,
	// alerts (rules, delivery, queue), application status, metrics, the
	// read API's in-memory points and serve. On the quiet 2-core machine
	// with a warm cache the packages added last (workers, internal/logging,
	// alerting/outbound, alerting/queue, workers/verifier, api/pointset,
	// appstatus, internal/retrypolicy, serve) took 53 s together.
	if err := sh("go", append([]string{"test", "-race", "-count=1"}, racePackages...)...); err != nil {
		return fmt.Errorf("go test -race: %w", err)
	}
	return nil
}

// racePackages are tested again with -race by Test.
var racePackages = []string{"./coordinator", "./workers", "./workers/process", "./workers/verifier", "./config",
	"./internal/logging", "./internal/retrypolicy", "./alert", "./alerting/rules", "./alerting/outbound",
	"./alerting/queue", "./appstatus", "./monitor", "./api/pointset", "./serve"}

// startCassandra starts a throwaway Cassandra on free ports and returns the
// environment that points the tests at it (CASSANDRA_TEST_*).
func startCassandra() (env []string, stop func(), err error) {
	if os.Getenv("CASSANDRA_TEST_HOST") != "" {
		return nil, func() {}, nil // a server is given
	}
	dir, err := os.MkdirTemp("", "mage-cassandra-")
	if err != nil {
		return nil, nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, nil, err
	}
	stop = func() {
		if err := sh("bash", "tools/cassandra/stop.sh", "--dir", dir, "--purge"); err != nil {
			fmt.Fprintln(os.Stderr, "stopping Cassandra:", err)
		}
	}
	if err := sh("bash", "tools/cassandra/start.sh", "--port", strconv.Itoa(ports[0]), "--storage-port", strconv.Itoa(ports[1]), "--dir", dir); err != nil {
		stop()
		return nil, nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		stop()
		return nil, nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
			env = append(env, kv)
		}
	}
	return env, stop, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Bench runs the benchmarks against a durable throwaway PostgreSQL: scoring and the per-producer evidence alone, a whole batch at 200, 1,000 and 10,000 producers, the evidence's cost at 3,000 and 10,000, then a day of batches (BENCH_DAY_PRODUCERS, default 1000) for the history-growth trend.
func Bench() error {
	os.Setenv("PGTEST_DURABLE", "1")
	if err := sh("go", "test", "-run", "^$", "-bench", "Score|Evidence", "-benchtime", "20x", "./coordinator/"); err != nil {
		return err
	}
	return sh("go", "test", "-run", "^$", "-bench", "Batch|Evidence|Day", "-benchtime", "5x", "-timeout", "60m", "./database/postgres/")
}

// BenchServe runs the read API's benchmarks against a durable throwaway PostgreSQL: leaderboards, producer pages and 1,000 stream clients at 10,000 producers and 90 days of batches seeded with set-based SQL (BENCH_API_PRODUCERS, BENCH_API_DAYS, BENCH_API_CLIENTS; BENCH_API_KEEP_DB=name with TEST_DATABASE_URL keeps the seeded database for the next run), then the former read index's cost to the batch write at 10,000 producers (BENCH_API_WRITE_PRODUCERS).
func BenchServe() error {
	os.Setenv("PGTEST_DURABLE", "1")
	if err := sh("go", "test", "-run", "^$", "-bench", "BenchmarkServe", "-benchtime", "100x", "-timeout", "90m", "./api/"); err != nil {
		return err
	}
	return sh("go", "test", "-run", "^$", "-bench", "BenchmarkReadIndexWriteCost", "-benchtime", "10x", "-timeout", "60m", "./api/")
}

// BenchRange runs issue 14's full-size benchmarks of the range engine against a durable throwaway PostgreSQL, each side by side with batch after batch on a copy holding the same submissions: the loop's catch-up after a week's downtime at 3,000 producers (504 batches, BENCH_CATCHUP_PRODUCERS, BENCH_CATCHUP_BATCHES), then the rescore of 90 days at 1,000 producers (6,480 batches, BENCH_RESCORE_DAYS, BENCH_RESCORE_PRODUCERS) after one valid submission in fifty was made invalid. The 90-day run needs about 45 GB of disk and more than an hour; it prints its stages on stderr.
func BenchRange() error {
	os.Setenv("PGTEST_DURABLE", "1")
	return sh("go", "test", "-run", "^$", "-bench", "^(BenchmarkCatchUp|BenchmarkRescore)$", "-benchtime", "1x", "-timeout", "4h", "./database/postgres/")
}

// BenchAlerts runs the alerts step's benchmarks on a throwaway PostgreSQL (fsync off, as measured in docs/alerts.md): the step at 10,000 producers with the miss counts, missed_batches and a 24h score_below for every producer, then score_below over 7d and 30d for every producer after a 30-day history seeded with set-based SQL (the seeding takes minutes).
func BenchAlerts() error {
	return sh("go", "test", "-run", "^$", "-bench", "Step", "-benchtime", "5x", "-timeout", "60m", "./alerting/")
}

func sh(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", name, args, err)
	}
	return nil
}

// Soak runs issue 10's long fault-injection run: a day of batches (72) at 2,000 producers (SOAK_BATCHES, SOAK_PRODUCERS override), verified by the bundled verifier, with a worker that hangs, a worker that does nothing, a PostgreSQL restart, a frozen PostgreSQL and malformed rows, whose tables must equal an undisturbed run's. Its short version (8 batches, 120 producers, ~30 s) is TestSoak in the normal test suite.
func Soak() error {
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestSoak$", "-v", "-timeout", "180m", "./cmd/coordinator/")
	cmd.Env = append([]string{"SOAK_BATCHES=72", "SOAK_PRODUCERS=2000"}, os.Environ()...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	return nil
}
