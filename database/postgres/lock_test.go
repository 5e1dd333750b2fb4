package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

func TestLockAdmitsOneCoordinator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	release, err := postgres.Lock(ctx, pool, 0)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := postgres.Lock(ctx, pool, 600*time.Millisecond); !errors.Is(err, postgres.ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	if waited := time.Since(began); waited < 500*time.Millisecond {
		t.Errorf("gave up after %v, want it to wait for the holder first", waited)
	}
	// A holder that goes away (as a killed process's session does) frees it.
	go func() { time.Sleep(300 * time.Millisecond); release() }()
	release2, err := postgres.Lock(ctx, pool, 5*time.Second)
	if err != nil {
		t.Fatalf("lock after the holder left: %v", err)
	}
	release2()
}

// Issue 10 item 4: when the lock connection dies, Watch reports the loss
// and every commit is fenced off (ErrLockLost, nothing written) until the
// lock is taken again.
func TestLostLockFencesCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, cfg)
	if err := postgres.InitDatabase(ctx, pool, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), false); err != nil {
		t.Fatal(err)
	}
	lock, err := postgres.Acquire(ctx, pgtest.Pool(t, cfg), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go lock.Watch(wctx, 50*time.Millisecond, time.Second, slog.New(slog.DiscardHandler))

	store := &postgres.Database{Pool: pool, Lock: lock}
	commit := func() error {
		last, err := store.LastBatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.CommitBatch(ctx, last, func([]coordinator.ShortlistedHash) (*coordinator.Record, error) {
			w := coordinator.Window{Start: last.End, End: last.End.Add(20 * time.Minute)}
			return &coordinator.Record{Window: w, Result: coordinator.Score(nil, nil), UptimeDays: 90, Now: w.End}, nil
		})
		return err
	}
	if err := commit(); err != nil {
		t.Fatalf("commit with the lock held: %v", err)
	}
	pid := lock.PID()
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lock.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not report the lost lock connection")
	}
	if err := commit(); !errors.Is(err, postgres.ErrLockLost) {
		t.Fatalf("commit after the lock was lost: %v, want ErrLockLost", err)
	}
	if err := lock.Reacquire(ctx, 10*time.Second, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if lock.PID() == pid || lock.PID() == 0 {
		t.Fatalf("lock pid %d after re-acquiring (was %d)", lock.PID(), pid)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit after re-acquiring: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bot_logs WHERE files_processed > -1`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d batches committed (%v), want 2", n, err)
	}
}
