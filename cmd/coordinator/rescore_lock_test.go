package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// Issue 14: "the loop is held off while [rescore] runs". A rescore halted
// inside its transaction (after taking the batch lock) makes the loop's
// next commit wait; once the rescore commits, the loop commits on the
// re-scored shortlist, and the database is that of a scratch run of every
// batch on the corrected data.
func TestLoopWaitsForRescore(t *testing.T) {
	t.Parallel()
	subs := crashNet()
	scratch := setup(t, flip(subs)).cfg
	runCoordinator(t, scratch, "run", "--batches", fmt.Sprint(batches))
	want := scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, scratch)))

	cfg := setup(t, subs).cfg
	runCoordinator(t, cfg, "run", "--batches", fmt.Sprint(batches-1))
	setVerification(t, cfg, flip(subs))

	// The rescore, halted at its points write.
	rs := haltingCmd(cfg, "tx_points#1", append([]string{"rescore"}, rangeArgs...)...)
	stderr, err := rs.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.Process.Kill() }()
	halted, resumed := make(chan bool, 1), make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			switch {
			case strings.HasPrefix(sc.Text(), "HALT "):
				halted <- true
			case strings.HasPrefix(sc.Text(), "RESUME "):
				resumed <- true
			}
		}
	}()
	select {
	case <-halted:
	case <-time.After(60 * time.Second):
		t.Fatal("the rescore did not reach tx_points")
	}

	// The loop's next batch: verified and scored, its commit waits.
	var loopOut syncBuffer
	loop := coordinatorCmd(cfg, nil, "run", "--batches", "1")
	loop.Stdout, loop.Stderr = &loopOut, &loopOut
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = loop.Process.Kill() }()
	loopDone := make(chan error, 1)
	go func() { loopDone <- loop.Wait() }()
	pool := pgtest.Pool(t, cfg)
	waiting := func() bool {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	if !waitFor(60*time.Second, waiting) {
		t.Fatalf("the loop never waited for the batch lock:\n%s", loopOut.String())
	}
	time.Sleep(time.Second)
	select {
	case err := <-loopDone:
		t.Fatalf("the loop finished (%v) while the rescore held the batch lock:\n%s", err, loopOut.String())
	default:
	}
	if n := committed(t, cfg); n != batches-1 {
		t.Fatalf("%d batches committed while the rescore held the batch lock, want %d", n, batches-1)
	}

	if err := rs.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("the rescore did not resume")
	}
	if err := rs.Wait(); err != nil {
		t.Fatalf("rescore: %v", err)
	}
	select {
	case err := <-loopDone:
		if err != nil {
			t.Fatalf("loop: %v\n%s", err, loopOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the loop did not commit after the rescore:\n%s", loopOut.String())
	}
	if strings.Contains(loopOut.String(), `"msg":"batch failed; retrying"`) {
		t.Errorf("the loop's attempt failed instead of waiting:\n%s", loopOut.String())
	}
	if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pool))); d != "" {
		t.Fatalf("rescore then the loop's batch differ from a scratch run:\n%s", d)
	}
}

// Issue 14: rescore and reverify need the writer role. As the read-only
// user (create-ro-user) they fail with a message naming what the role may
// not do, exit 1, and change nothing; a dry run too (it would hold the loop
// off with the batch lock).
func TestRescoreNeedsWriterRole(t *testing.T) {
	t.Parallel()
	cfg, _ := flippedDB(t)
	ro := "ro_" + cfg.DB
	out, err := coordinatorCmd(cfg, []string{"POSTGRES_RO_USER=" + ro, "POSTGRES_RO_PASSWORD=ro-Secret-9"}, "create-ro-user").CombinedOutput()
	if err != nil {
		t.Fatalf("create-ro-user: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		pool, err := postgres.Open(context.Background(), cfg.ConnString(""))
		if err != nil {
			return
		}
		defer pool.Close()
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+ro)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+ro)
	})
	before := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
	asRO := config.Postgres{Host: cfg.Host, Port: cfg.Port, DB: cfg.DB, User: ro, Password: "ro-Secret-9"}
	for _, args := range [][]string{
		append([]string{"rescore"}, rangeArgs...),
		append([]string{"rescore", "--dry-run"}, rangeArgs...),
		append([]string{"reverify", "--rescore"}, rangeArgs...),
	} {
		out, err := coordinatorCmd(asRO, []string{"WORKER_MODE=process", "WORKER_COMMAND=true"}, args...).CombinedOutput()
		want := fmt.Sprintf("coordinator: %s needs the coordinator's writer role: POSTGRES_USER=%s may not ", args[0], ro)
		if exitCode(err) != 1 || !strings.Contains(string(out), want) || !strings.Contains(string(out), "INSERT on points") {
			t.Errorf("%v as the read-only user: exit %d, want 1 and %q:\n%s", args, exitCode(err), want, out)
		}
		if args[0] == "reverify" && !strings.Contains(string(out), "may not UPDATE on submissions, ") {
			t.Errorf("reverify does not name the submissions it would reset:\n%s", out)
		}
		if strings.Contains(string(out), "ro-Secret-9") {
			t.Errorf("the password is in the output:\n%s", out)
		}
	}
	if d := before.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
		t.Fatalf("the refused commands changed the database:\n%s", d)
	}
}
