package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/cassandra/cassandratest"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// binary is the coordinator as shipped; crashBinary is the same built with
// -tags crashtest, which halts at COORDINATOR_HALT_AT (see
// checkpoint_crashtest.go).
var binary, crashBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coordinator-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, crashBinary = filepath.Join(dir, "coordinator"), filepath.Join(dir, "coordinator-crashtest")
	for _, b := range []struct{ out, tags string }{{binary, ""}, {crashBinary, "crashtest"}} {
		if out, err := exec.Command("go", "build", "-tags", b.tags, "-o", b.out, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the coordinator (tags %q): %v\n%s", b.tags, err, out)
			os.Exit(1)
		}
	}
	code := pgtest.MainFunc(func() int { return cassandratest.MainFunc(m.Run) })
	os.RemoveAll(dir)
	os.Exit(code)
}

func coordinatorCmd(cfg config.Postgres, extraEnv []string, args ...string) *exec.Cmd {
	return coordinatorBinaryCmd(binary, cfg, extraEnv, args...)
}

// haltingCmd is coordinatorCmd with the crashtest build, halting at point
// (name#n).
func haltingCmd(cfg config.Postgres, point string, args ...string) *exec.Cmd {
	return coordinatorBinaryCmd(crashBinary, cfg, []string{"COORDINATOR_HALT_AT=" + point}, args...)
}

func coordinatorBinaryCmd(bin string, cfg config.Postgres, extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = os.TempDir() // no stray .env
	// Batch after batch unless a test asks for catch-up mode.
	cmd.Env = append(append(pgtest.Env(cfg), "WORKER_MODE=none", "IGNORE_APPLICATION_STATUS=1", "METRICS_ADDR=",
		"SURVEY_INTERVAL_MINUTES=20", "CATCH_UP_AFTER_BATCHES=0", "PATH="+os.Getenv("PATH")), extraEnv...)
	return cmd
}

func runCoordinator(t *testing.T, cfg config.Postgres, args ...string) {
	t.Helper()
	runCoordinatorEnv(t, cfg, nil, args...)
}

func runCoordinatorEnv(t *testing.T, cfg config.Postgres, env []string, args ...string) {
	t.Helper()
	out, err := coordinatorCmd(cfg, env, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("coordinator %v: %v\n%s", args, err, out)
	}
}

// syncBuffer is a bytes.Buffer that a test may read while a process writes
// it (exec copies a non-file Stdout from another goroutine).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits up to d for the output to contain s.
func (b *syncBuffer) waitFor(s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(b.String(), s) {
			return true
		}
	}
	return false
}

func committed(t *testing.T, cfg config.Postgres) int {
	t.Helper()
	var n int
	if err := pgtest.Pool(t, cfg).QueryRow(context.Background(), `SELECT count(*) FROM bot_logs WHERE files_processed > -1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// reference is the database of an uninterrupted run.
func reference(t *testing.T) pgtest.Snapshot {
	t.Helper()
	cfg := seeded(t)
	runCoordinator(t, cfg, "run", "--batches", fmt.Sprint(batches))
	if n := committed(t, cfg); n != batches {
		t.Fatalf("uninterrupted run committed %d batches, want %d", n, batches)
	}
	snap := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
	for _, table := range []string{"batch_evidence", "batch_evidence_summary", "batch_error_classes", "alert_producer_misses", "alert_state", "alert_outbox",
		"alert_score_windows", "alert_score_window_points"} {
		if len(snap[table]) == 0 {
			t.Fatalf("the uninterrupted run wrote no %s rows: the crash tests would not compare them", table)
		}
	}
	return snap
}

// haltAndKill starts the coordinator so that it halts at point, waits for
// it to get there and kills it with SIGKILL.
func haltAndKill(t *testing.T, cfg config.Postgres, point string, env ...string) {
	t.Helper()
	haltAndKillCmd(t, coordinatorBinaryCmd(crashBinary, cfg, append([]string{"COORDINATOR_HALT_AT=" + point}, env...), "run", "--batches", fmt.Sprint(batches)), point)
}

// haltAndKillCmd starts cmd (with COORDINATOR_HALT_AT=point in its
// environment), waits for it to halt there, runs beforeKill (while the
// process is halted: its other goroutines still run) and kills it with
// SIGKILL.
func haltAndKillCmd(t *testing.T, cmd *exec.Cmd, point string, beforeKill ...func()) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout syncBuffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	halted := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "HALT ") {
				halted <- true
				break
			}
		}
		halted <- false
	}()
	select {
	case ok := <-halted:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("coordinator never reached %s:\n%s", point, stdout.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("coordinator did not reach %s within 60s:\n%s", point, stdout.String())
	}
	for _, f := range beforeKill {
		f()
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

func TestCrashSafety(t *testing.T) {
	want := reference(t)
	points := []string{"verify", "load", "tx_begin", "tx_statehash", "tx_nodes", "tx_bot_logs", "tx_shortlist",
		"tx_points", "tx_scores", "tx_scoreboard", "tx_evidence", "tx_alerts", "tx_notify", "committed"}
	for _, name := range points {
		for _, nth := range []int{1, 3} {
			point := fmt.Sprintf("%s#%d", name, nth)
			t.Run(point, func(t *testing.T) {
				t.Parallel()
				cfg := seeded(t)
				haltAndKill(t, cfg, point)
				before := committed(t, cfg)
				wantBefore := nth - 1
				if name == "committed" {
					wantBefore = nth // killed just after the commit
				}
				if before != wantBefore {
					t.Errorf("after the kill at %s: %d batches committed, want %d", point, before, wantBefore)
				}
				runCoordinator(t, cfg, "run", "--batches", fmt.Sprint(batches-before))
				if d := want.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
					t.Fatalf("database after a kill at %s differs from an uninterrupted run:\n%s", point, d)
				}
			})
		}
	}
}

func TestCrashSafetyRepeatedKills(t *testing.T) {
	t.Parallel()
	want := reference(t)
	cfg := seeded(t)
	// Kill the same run again and again, each time deeper into its work.
	for i, point := range []string{"tx_points#1", "tx_bot_logs#2", "tx_scores#1", "tx_statehash#2", "load#1"} {
		haltAndKill(t, cfg, point)
		if n := committed(t, cfg); n > batches {
			t.Fatalf("kill %d: %d batches committed", i, n)
		}
	}
	runCoordinator(t, cfg, "run", "--batches", fmt.Sprint(batches-committed(t, cfg)))
	if d := want.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
		t.Fatalf("database after repeated kills differs from an uninterrupted run:\n%s", d)
	}
}

// TestRestartIndependence also runs the shipped binary with the crash
// tests' halt variable set: it has no checkpoints, so it must not halt.
func TestRestartIndependence(t *testing.T) {
	t.Parallel()
	want := reference(t)
	cfg := seeded(t)
	for range batches {
		runCoordinatorEnv(t, cfg, []string{"COORDINATOR_HALT_AT=verify#1"}, "run", "--batches", "1")
	}
	if d := want.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
		t.Fatalf("a run restarted after every batch differs from a continuous run:\n%s", d)
	}
}

func TestSignalStopsPromptly(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	// Halt inside the second batch's transaction, then ask politely.
	cmd := haltingCmd(cfg, "tx_points#2", "run")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "HALT ") {
	}
	go func() { // drain
		for sc.Scan() {
		}
	}()
	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no exit within 10s of SIGTERM")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %v to stop", took)
	}
	if n := committed(t, cfg); n != 1 {
		t.Errorf("%d batches committed, want 1: the interrupted second batch must be rolled back", n)
	}

	// And while waiting for a window that has not ended yet.
	cfg2 := pgtest.NewDatabase(t)
	if err := postgres.InitDatabase(context.Background(), pgtest.Pool(t, cfg2), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	cmd = coordinatorCmd(cfg2, nil, "run")
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !out.waitFor("waiting for the batch window to close", 20*time.Second) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the coordinator never waited for the window to close:\n%s", out.String())
	}
	began = time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT while waiting: %v\n%s", err, out.String())
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %v to stop while waiting", took)
	}
}

func TestConfigurationErrorsExitTwo(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "run")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"SURVEY_INTERVAL_MINUTES=soon", "POSTGRES_PASSWORD=hunter2", "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want 2\n%s", err, out)
	}
	for _, want := range []string{"SURVEY_INTERVAL_MINUTES: invalid value", "POSTGRES_HOST: missing", "WORKER_IMAGE: missing"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("output leaks the password:\n%s", out)
	}
}

func TestSecondCoordinatorRefused(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewDatabase(t)
	if err := postgres.InitDatabase(context.Background(), pgtest.Pool(t, cfg), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	first := coordinatorCmd(cfg, nil, "run")
	var out syncBuffer
	first.Stdout = &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Signal(syscall.SIGTERM); _ = first.Wait() }()
	if !out.waitFor("waiting for the batch window to close", 20*time.Second) {
		t.Fatalf("the first coordinator never waited for the window to close:\n%s", out.String())
	}
	second, err := coordinatorCmd(cfg, nil, "run", "--batches", "1").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("second coordinator: %v, want exit 1\n%s", err, second)
	}
	if !strings.Contains(string(second), "another coordinator is running on this database") {
		t.Errorf("second coordinator's message:\n%s", second)
	}
}
