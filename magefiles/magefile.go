//go:build mage

// Database tasks, tests and benchmarks of the uptime validator coordinator.
// Run them without installing mage: go tool mage <target>. The database
// targets read POSTGRES_* from the environment or a .env file.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// CreateDatabase creates POSTGRES_DB if missing and applies the schema migrations (idempotent).
func CreateDatabase(ctx context.Context) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.CreateDatabase(ctx, cfg, os.Stdout)
}

// InitDatabase inserts the starting bot_logs row. Environment: BATCH_END_EPOCH (unix seconds, "YYYY-MM-DD HH:MM:SS" UTC or RFC 3339; default now), MINS_AGO (start N minutes ago instead), OVERRIDE_EMPTY=1 (insert even when bot_logs has rows).
func InitDatabase(ctx context.Context) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	t, err := config.LoadTasks(config.Environment)
	if err != nil {
		return err
	}
	return tasks.InitDatabase(ctx, cfg, t.BatchEndEpoch, t.MinsAgo, t.OverrideEmpty, os.Stdout)
}

// DropDatabase drops POSTGRES_DB.
func DropDatabase(ctx context.Context) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.DropDatabase(ctx, cfg, os.Stdout)
}

// CreateROUser creates POSTGRES_RO_USER (password POSTGRES_RO_PASSWORD) with CONNECT, USAGE and SELECT on every table, now and later (idempotent).
func CreateROUser(ctx context.Context) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.CreateROUser(ctx, cfg, os.Stdout)
}

// Cleanup deletes data older than <days> days: go tool mage cleanup 180.
func Cleanup(ctx context.Context, days int) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.Cleanup(ctx, cfg, days, os.Stdout)
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
	// The race detector where it is affordable (about 50 s on 2 busy
	// cores, its compilation included): the engine, the worker processes,
	// configuration, alerts and metrics.
	if err := sh("go", append([]string{"test", "-race", "-count=1"}, racePackages...)...); err != nil {
		return fmt.Errorf("go test -race: %w", err)
	}
	return nil
}

// racePackages are tested again with -race by Test.
var racePackages = []string{"./coordinator", "./workers/process", "./config", "./alert", "./alerting/rules", "./monitor"}

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

// BenchServe runs the read API's benchmarks against a durable throwaway PostgreSQL: leaderboards, producer pages and 1,000 stream clients at 10,000 producers and 90 days of batches seeded with set-based SQL (BENCH_API_PRODUCERS, BENCH_API_DAYS, BENCH_API_CLIENTS), then the read index's cost to the batch write at 10,000 producers (BENCH_API_WRITE_PRODUCERS).
func BenchServe() error {
	os.Setenv("PGTEST_DURABLE", "1")
	if err := sh("go", "test", "-run", "^$", "-bench", "BenchmarkServe", "-benchtime", "100x", "-timeout", "90m", "./api/"); err != nil {
		return err
	}
	return sh("go", "test", "-run", "^$", "-bench", "BenchmarkReadIndexWriteCost", "-benchtime", "10x", "-timeout", "60m", "./api/")
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
