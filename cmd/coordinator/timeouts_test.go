package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/porttest"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// waitFor polls cond every 50ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// ownCluster starts a PostgreSQL server of the test's own (to freeze or
// restart it), with a migrated database holding batches windows of verified
// submissions and the starting bot_logs row.
func ownCluster(t *testing.T, windows int) (*pgtest.Cluster, config.Postgres) {
	t.Helper()
	c, err := pgtest.StartCluster(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cfg := c.Config
	ctx := context.Background()
	if _, err := postgres.Migrate(ctx, pgtest.Pool(t, cfg)); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Open(ctx, cfg.ConnString(""))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	net := synthnet.Generate(synthnet.Params{Seed: 43, Producers: 80, Start: netStart, Duration: time.Duration(windows) * 20 * time.Minute})
	pgtest.SeedPool(t, pool, net.Verified(), netStart)
	return c, cfg
}

// Issue 10 item 5: a server that accepts TCP and never answers fails
// start-up within POSTGRES_CONNECT_TIMEOUT (it used to hang forever).
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // accepted, never answered
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := coordinatorCmd(config.Postgres{Host: "127.0.0.1", Port: port, DB: "db", User: "u"}, []string{"POSTGRES_CONNECT_TIMEOUT=1s"})
	cmd := exec.CommandContext(ctx, binary, "run")
	cmd.Env, cmd.Dir = base.Env, base.Dir
	began := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(began)
	if ctx.Err() != nil {
		t.Fatalf("start-up hung against a silent server (killed after %s):\n%s", took, out)
	}
	if exitCode(err) != 1 || !strings.Contains(string(out), "timeout") {
		t.Fatalf("exit %d after %s, want 1 and a timeout:\n%s", exitCode(err), took, out)
	}
	if took > 20*time.Second {
		t.Errorf("start-up failed after %s, want a few seconds", took)
	}
}

// Issue 10 item 5: a frozen database (SIGSTOP: TCP still accepted, nothing
// answered) used to block the loop silently. The database step now fails the
// attempt after POSTGRES_STATEMENT_TIMEOUT, the attempt is retried, and once
// the server is thawed the batch commits.
func TestFrozenDatabaseFailsTheAttempt(t *testing.T) {
	t.Parallel()
	cluster, cfg := ownCluster(t, 1)
	var out syncBuffer
	// The verifier (1 s) ends after the freeze; the load step then fails
	// at its 1 s deadline, well before the lock monitor (a ping every
	// second, lost after 5 s without an answer) can notice the freeze, so
	// that it is the step's deadline this test proves.
	cmd := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=sh -c 'sleep 1' verifier", "RETRY_COUNT=5",
		"POSTGRES_STATEMENT_TIMEOUT=1s"}, "run", "--batches", "1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cluster.Signal(syscall.SIGCONT) }()
	if !waitFor(30*time.Second, func() bool { return strings.Contains(out.String(), `"msg":"verifier launched"`) }) {
		t.Fatalf("no verifier launched:\n%s", out.String())
	}
	if err := cluster.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	const retried = `"msg":"batch failed; retrying"`
	if !waitFor(60*time.Second, func() bool { return strings.Contains(out.String(), retried) }) {
		t.Fatalf("the attempt did not fail against the frozen database:\n%s", out.String())
	}
	failedAfter := time.Since(frozen)
	if err := cluster.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("coordinator: %v\n%s", err, out.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("no commit after the database was thawed:\n%s", out.String())
	}
	log := out.String()
	if !strings.Contains(log, "loading submissions") || !strings.Contains(log, "timeout") {
		t.Errorf("the failed attempt does not say which step timed out:\n%s", log)
	}
	if strings.Contains(log, "advisory lock") {
		t.Errorf("the lock monitor, not the step's deadline, caught the freeze:\n%s", log)
	}
	if n := committed(t, cfg); n != 1 {
		t.Fatalf("%d batches committed, want 1", n)
	}
	t.Logf("frozen at the load step; the attempt failed %s later", failedAfter.Round(time.Millisecond))
}

// Issue 10 item 5: /healthz (liveness) fails when the loop stays in one
// step longer than that step may take, so Kubernetes restarts a wedged
// coordinator; it is OK while the step is within its bound.
func TestLivenessFailsWhenTheLoopIsWedged(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	addr := porttest.Addr(t)
	// The halt hook wedges the loop at the load step, which may take up to
	// POSTGRES_STATEMENT_TIMEOUT (2s) plus a grace of 2s.
	cmd := coordinatorBinaryCmd(crashBinary, cfg, []string{"METRICS_ADDR=" + addr, "POSTGRES_STATEMENT_TIMEOUT=2s", "COORDINATOR_HALT_AT=load"}, "run")
	var stdout syncBuffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	halted := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "HALT ") {
				close(halted)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-halted:
	case <-time.After(60 * time.Second):
		t.Fatalf("the coordinator never reached the load step:\n%s", stdout.String())
	}
	healthz := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := healthz(); code != http.StatusOK {
		t.Fatalf("/healthz right after the step started: %d %s, want 200", code, body)
	}
	var code int
	var body string
	if !waitFor(30*time.Second, func() bool { code, body = healthz(); return code == http.StatusServiceUnavailable }) {
		t.Fatalf("/healthz still %d %q with the loop wedged", code, body)
	}
	if !strings.Contains(body, "the loop is stuck: reading submissions since ") {
		t.Errorf("/healthz says %q", body)
	}
}

// Issue 10 item 10: METRICS_ADDR set and empty disables the listener (it
// used to fall back to :8080); an address in use fails start-up with exit 1
// (it used to run without probes).
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	out, err := coordinatorCmd(cfg, []string{"METRICS_ADDR="}, "run", "--batches", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("coordinator: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "METRICS_ADDR is empty: no /healthz, /readyz or /metrics listener") ||
		strings.Contains(string(out), "serving /healthz") || strings.Contains(string(out), `"METRICS_ADDR":":8080"`) {
		t.Errorf("METRICS_ADDR= did not disable the listener:\n%s", out)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out, err = coordinatorCmd(cfg, []string{"METRICS_ADDR=" + busy.Addr().String()}, "run", "--batches", "1").CombinedOutput()
	want := "METRICS_ADDR=" + busy.Addr().String() + ": cannot listen for /healthz, /readyz and /metrics: listen tcp " + busy.Addr().String() + ": bind: address already in use"
	if exitCode(err) != 1 || !strings.Contains(string(out), want) {
		t.Fatalf("exit %d, want 1 with %q:\n%s", exitCode(err), want, out)
	}
	if n := committed(t, cfg); n != 1 {
		t.Errorf("%d batches committed, want only the first run's", n)
	}
}

// alive reports whether pid runs (a zombie, killed but not reaped by its
// new parent, does not).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// Issue 10 item 11: SIGKILL of the coordinator ends its verifiers (the
// parent-death signal) but not what they started (here a child that
// ignores SIGTERM); the next coordinator on the database ends those
// leftovers before it launches anything.
func TestRestartEndsLeftoverWorkerChildren(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	script := `trap "" TERM; sleep 300 & echo $! > ` + pidFile + `; wait`
	var out syncBuffer
	cmd := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=sh -c " + shellQuote(script) + " verifier", "MINI_BATCH_NUMBER=1"}, "run")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if !waitFor(60*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}) {
		_ = cmd.Process.Kill()
		t.Fatalf("the worker did not start its child:\n%s", out.String())
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	if !alive(pid) {
		t.Fatalf("the worker's child %d died with the coordinator: nothing left to test", pid)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	again, err := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=true", "MINI_BATCH_NUMBER=1"}, "run", "--batches", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("restarted coordinator: %v\n%s", err, again)
	}
	if !strings.Contains(string(again), "ending what a verifier of a previous coordinator left running") {
		t.Errorf("the restart does not report the leftovers:\n%s", again)
	}
	if !waitFor(5*time.Second, func() bool { return !alive(pid) }) {
		t.Fatalf("the previous worker's child %d still runs after the restart", pid)
	}
}
