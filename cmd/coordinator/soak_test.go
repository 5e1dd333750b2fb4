package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// TestSoak (issue 10, the long run, short version): batches of a synthetic
// network verified by the bundled verifier, with faults injected — a worker
// that hangs (killed at WORKER_TIMEOUT), a worker that does nothing, a
// PostgreSQL restart, a frozen PostgreSQL, malformed verified rows — must
// end with tables identical to an undisturbed run of the same data; every
// fault shows as a failed, retried attempt. SOAK_BATCHES and
// SOAK_PRODUCERS make it longer (a day: 72 batches at 2,000 producers).
func TestSoak(t *testing.T) {
	t.Parallel()
	batches, producers := 8, 120
	if n, err := strconv.Atoi(os.Getenv("SOAK_BATCHES")); err == nil && n > 0 {
		batches = n
	}
	if n, err := strconv.Atoi(os.Getenv("SOAK_PRODUCERS")); err == nil && n > 0 {
		producers = n
	}
	net := synthnet.Generate(synthnet.Params{Seed: 53, Producers: producers, Start: netStart, Duration: time.Duration(batches) * 20 * time.Minute})
	blocks := filepath.Join(t.TempDir(), "blocks")
	if err := synthnet.WriteBlockFiles(blocks, net.Blocks); err != nil {
		t.Fatal(err)
	}
	subs := net.Unverified()
	// Malformed rows a faulty verifier left as verified, in every window.
	for i := range batches {
		s := subs[0]
		s.Submitter = fmt.Sprintf("B62qmalformed%d", i)
		s.SubmittedAt = netStart.Add(time.Duration(i)*20*time.Minute + time.Minute)
		s.SubmittedAtDate = s.SubmittedAt.Truncate(24 * time.Hour)
		s.Verified, s.StateHash = ptr(true), ptr(strings.Repeat("3NK", 2000))
		subs = append(subs, s)
	}
	load := func(cfg config.Postgres) {
		pool, err := postgres.Open(context.Background(), cfg.ConnString(""))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		pgtest.SeedPool(t, pool, subs, netStart)
	}
	// The hanging worker is killed at WORKER_TIMEOUT: short, but well above
	// a real verification of the batch's size. The error names the timeout
	// as Go writes a duration: 60s is "1m0s" (the long run's log check
	// once looked for "60s" and failed although the worker was killed).
	timeout, shown, limit := "5s", "5s", 10*time.Minute
	if producers > 500 {
		timeout, shown, limit = "60s", "1m0s", 150*time.Minute
	}
	worker := func(script string) []string {
		return []string{"WORKER_MODE=process", "MINI_BATCH_NUMBER=1", "WORKER_TIMEOUT=" + timeout, "RETRY_COUNT=6",
			"BLOCKS_DIR=" + blocks, "WORKER_COMMAND=sh -c " + shellQuote(script) + " verifier"}
	}

	// The undisturbed run.
	calm := pgtest.NewDatabase(t)
	load(calm)
	if out, err := coordinatorCmd(calm, worker(binary+` verify "$@"`), "run", "--batches", strconv.Itoa(batches)).CombinedOutput(); err != nil {
		t.Fatalf("undisturbed run: %v\n%s", err, out)
	}

	// The disturbed run, on a server of its own.
	cluster, err := pgtest.StartCluster(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	cfg := cluster.Config
	if _, err := postgres.Migrate(context.Background(), pgtest.Pool(t, cfg)); err != nil {
		t.Fatal(err)
	}
	load(cfg)
	counter := filepath.Join(t.TempDir(), "attempts")
	// The faults come back every `every` attempts and commits: once in the
	// short run, six times each in a day of batches. Attempt 2 (mod every)
	// hangs, attempt 4 does nothing, the others verify.
	every := max(12, batches/6)
	script := `n=$(( $(cat ` + counter + ` 2>/dev/null || echo 0) + 1 )); echo $n > ` + counter + `
case $(( n % ` + strconv.Itoa(every) + ` )) in 2) exec sleep 300 ;; 4) exit 0 ;; esac
exec ` + binary + ` verify "$@"`
	var out syncBuffer
	cmd := coordinatorCmd(cfg, append(worker(script), "POSTGRES_STATEMENT_TIMEOUT=2s"), "run", "--batches", strconv.Itoa(batches))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	commits := func() int { return strings.Count(out.String(), `"msg":"batch committed"`) }
	restarts, freezes, nextRestart, nextFreeze := 0, 0, 3, 5
	began := time.Now()
	deadline := time.After(limit)
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("the disturbed run did not finish:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		switch n := commits(); {
		case n >= nextRestart:
			restarts, nextRestart = restarts+1, nextRestart+every
			if err := cluster.Restart(); err != nil {
				t.Fatal(err)
			}
		case n >= nextFreeze:
			freezes, nextFreeze = freezes+1, nextFreeze+every
			if err := cluster.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(4 * time.Second)
			if err := cluster.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := out.String()
	if runErr != nil {
		t.Fatalf("disturbed run: %v\n%s", runErr, log)
	}
	retries := strings.Count(log, `"msg":"batch failed; retrying"`)
	const (
		killedMsg = "still running after WORKER_TIMEOUT="
		leftMsg   = "verifier finished but left"
		lostMsg   = "scoring stopped: the coordinator's advisory lock was lost"
	)
	for _, want := range []string{"mini-batches [0] " + killedMsg + shown + " were killed", leftMsg, "malformed submission ignored"} {
		if !strings.Contains(log, want) {
			t.Errorf("the disturbed run's log lacks %q", want)
		}
	}
	if restarts == 0 || freezes == 0 {
		t.Errorf("%d restarts and %d freezes injected, want at least one of each", restarts, freezes)
	}
	raw, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	attempts, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	hangs, idles := 0, 0
	for n := 1; n <= attempts; n++ {
		switch n % every {
		case 2:
			hangs++
		case 4:
			idles++
		}
	}
	want := pgtest.TakeSnapshot(t, pgtest.Pool(t, calm))
	have := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
	for _, table := range []string{"nodes", "points", "bot_logs_statehash", "bot_logs", "statehash", "points_summary", "score_history"} {
		if d := (pgtest.Snapshot{table: want[table]}).Diff(pgtest.Snapshot{table: have[table]}); d != "" {
			t.Errorf("%s differs from the undisturbed run:\n%s", table, d)
		}
	}
	t.Logf("%d batches at %d producers (%d submissions): disturbed run %s, %d verifier attempts; injected %d hanging workers (%d killed at WORKER_TIMEOUT), %d do-nothing workers (%d attempts failed as unverified), %d PostgreSQL restarts, %d freezes (%d advisory lock losses); %d failed attempts retried; %d points, %d score_history rows: identical to the undisturbed run",
		batches, producers, len(subs), time.Since(began).Round(time.Second), attempts, hangs, strings.Count(log, killedMsg), idles, strings.Count(log, leftMsg),
		restarts, freezes, strings.Count(log, lostMsg), retries, len(have["points"]), len(have["score_history"]))
}
