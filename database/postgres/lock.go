package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// coordinatorLockKey is the session advisory lock a running coordinator
// holds, so that two coordinators never score one database at once.
const coordinatorLockKey = 0x636f_6f72_6469 // "coordi"

// ErrLocked is returned by Lock when another coordinator holds the lock.
var ErrLocked = errors.New("another coordinator is running on this database (it holds the coordinator's advisory lock); refusing to start a second one")

// Lock takes the coordinator's advisory lock on a connection of its own and
// holds it until release is called or the process ends. When the lock is
// held, it tries again for up to wait (a coordinator that was just killed
// holds it until the server notices its connection is gone), then returns
// ErrLocked.
func Lock(ctx context.Context, connString string, wait time.Duration) (release func(), err error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parsing postgres connection settings: %w", err)
	}
	// Who holds the lock, for coordinator status (pg_stat_activity).
	host, _ := os.Hostname()
	cfg.RuntimeParams["application_name"] = fmt.Sprintf("coordinator pid=%d host=%s", os.Getpid(), host)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres for the coordinator lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(coordinatorLockKey)).Scan(&ok); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("taking the coordinator lock: %w", err)
		}
		if ok {
			return func() { conn.Close(context.Background()) }, nil
		}
		if time.Now().After(deadline) {
			conn.Close(context.Background())
			return nil, ErrLocked
		}
		select {
		case <-ctx.Done():
			conn.Close(context.Background())
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// CoordinatorLockKey is the key of the coordinator's session advisory lock
// (coordinator status shows who holds it).
const CoordinatorLockKey int64 = coordinatorLockKey
