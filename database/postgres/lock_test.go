package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

func TestLockAdmitsOneCoordinator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := pgtest.NewDatabase(t).ConnString("")
	release, err := postgres.Lock(ctx, conn, 0)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := postgres.Lock(ctx, conn, 600*time.Millisecond); !errors.Is(err, postgres.ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	if waited := time.Since(began); waited < 500*time.Millisecond {
		t.Errorf("gave up after %v, want it to wait for the holder first", waited)
	}
	// A holder that goes away (as a killed process's session does) frees it.
	go func() { time.Sleep(300 * time.Millisecond); release() }()
	release2, err := postgres.Lock(ctx, conn, 5*time.Second)
	if err != nil {
		t.Fatalf("lock after the holder left: %v", err)
	}
	release2()
}
