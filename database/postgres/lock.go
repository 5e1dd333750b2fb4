package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// coordinatorLockKey is the session advisory lock a running coordinator
// holds, so that two coordinators never score one database at once.
const coordinatorLockKey = 0x636f_6f72_6469 // "coordi"

// ErrLocked is returned by Lock when another coordinator holds the lock.
var ErrLocked = errors.New("another coordinator is running on this database (it holds the coordinator's advisory lock); refusing to start a second one")

// ErrLockLost is returned by a fenced CommitBatch when the coordinator's
// lock connection no longer holds the lock.
var ErrLockLost = errors.New("this coordinator no longer holds the coordinator's advisory lock (its connection to PostgreSQL was lost); nothing was committed")

// Lock takes the coordinator's advisory lock on a connection of its own
// (with pool's settings) and holds it until release is called or the
// process ends. When the lock is held, it tries again for up to wait (a
// coordinator that was just killed holds it until the server notices its
// connection is gone), then returns ErrLocked.
func Lock(ctx context.Context, pool *pgxpool.Pool, wait time.Duration) (release func(), err error) {
	l, err := Acquire(ctx, pool, wait)
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}

// HeldLock is the coordinator's advisory lock, held on a connection of its
// own. Watch monitors that connection: a session lock dies with its
// connection (a server restart, a network cut), and a coordinator that
// goes on scoring without it may score alongside another one.
type HeldLock struct {
	settings *pgx.ConnConfig // the pool's, for a connection of the lock's own
	pid      atomic.Int32    // backend pid of the lock connection

	mu   sync.Mutex
	conn *pgx.Conn
	lost chan struct{}
}

// Acquire takes the lock as Lock does and returns it held.
func Acquire(ctx context.Context, pool *pgxpool.Pool, wait time.Duration) (*HeldLock, error) {
	l := &HeldLock{settings: session(pool), lost: make(chan struct{})}
	if err := l.acquire(ctx, wait); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *HeldLock) acquire(ctx context.Context, wait time.Duration) error {
	cfg := l.settings.Copy()
	// Who holds the lock, for coordinator status (pg_stat_activity).
	host, _ := os.Hostname()
	cfg.RuntimeParams["application_name"] = fmt.Sprintf("coordinator pid=%d host=%s", os.Getpid(), host)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting to postgres for the coordinator lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		var ok bool
		var pid int32
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1), pg_backend_pid()`, int64(coordinatorLockKey)).Scan(&ok, &pid); err != nil {
			conn.Close(context.Background())
			return fmt.Errorf("taking the coordinator lock: %w", err)
		}
		if ok {
			l.mu.Lock()
			l.conn = conn
			l.mu.Unlock()
			l.pid.Store(pid)
			return nil
		}
		if time.Now().After(deadline) {
			conn.Close(context.Background())
			return ErrLocked
		}
		select {
		case <-ctx.Done():
			conn.Close(context.Background())
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Release gives the lock up (closes its connection).
func (l *HeldLock) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn = nil
	}
	l.pid.Store(0)
}

// PID is the server process id of the lock connection (0 when not held).
func (l *HeldLock) PID() int32 { return l.pid.Load() }

// Lost is closed when Watch finds the lock connection gone.
func (l *HeldLock) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Watch checks the lock connection every interval until ctx is done; when
// the connection does not answer within timeout or fails, the lock is
// considered lost: Watch closes the connection (the server releases the
// lock once it notices), closes Lost and returns.
func (l *HeldLock) Watch(ctx context.Context, interval, timeout time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		conn, lost := l.conn, l.lost
		l.mu.Unlock()
		if conn == nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := conn.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("the coordinator's advisory lock is lost: its connection to PostgreSQL failed", "error", err)
			l.Release()
			close(lost)
			return
		}
	}
}

// Reacquire takes the lock again after it was lost. It keeps trying to
// connect for up to patience (the server may be restarting); it returns
// ErrLocked when another coordinator holds the lock.
func (l *HeldLock) Reacquire(ctx context.Context, patience time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(patience)
	for {
		// A few seconds of patience with a held lock: after a freeze, the
		// server may not yet have ended this coordinator's old session.
		err := l.acquire(ctx, 5*time.Second)
		if err == nil {
			l.mu.Lock()
			l.lost = make(chan struct{})
			l.mu.Unlock()
			return nil
		}
		if errors.Is(err, ErrLocked) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		log.Warn("re-acquiring the coordinator's advisory lock", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// CoordinatorLockKey is the key of the coordinator's session advisory lock
// (coordinator status shows who holds it).
const CoordinatorLockKey int64 = coordinatorLockKey

// holdsLock reports whether the server process pid holds the coordinator's
// lock (pg_locks splits a bigint key into classid and objid).
func holdsLock(ctx context.Context, tx pgx.Tx, pid int32) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1 AND pid = $3)`,
		int64(coordinatorLockKey>>32), int64(coordinatorLockKey&0xffff_ffff), pid).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking the coordinator lock: %w", err)
	}
	return ok, nil
}
