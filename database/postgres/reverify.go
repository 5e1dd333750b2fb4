package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// RescoreWindows returns the windows of the committed batches whose end lies
// in [from, to), refusing a range that passes the end of the window the
// loop is working on (ErrOverlapsLoop), as ResetVerification does; it
// changes nothing.
func RescoreWindows(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, interval time.Duration) ([]coordinator.Window, error) {
	var windows []coordinator.Window
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		windows, err = rangeWindows(ctx, tx, from, to, interval)
		return err
	})
	return windows, err
}

// CopySubmissions upserts subs into the submissions table (the Postgres
// copy of Cassandra's submissions), overwriting the verification columns
// of rows already there.
func CopySubmissions(ctx context.Context, pool *pgxpool.Pool, subs []coordinator.Submission) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return copySubmissions(ctx, tx, subs) })
}

// Verification counts a window's submissions and those still unverified
// (verified IS NULL).
type Verification struct {
	Window            coordinator.Window
	Unverified, Total int
}

// VerificationCounts counts, per window, the submissions and those no
// verifier has marked, in one query.
func VerificationCounts(ctx context.Context, pool *pgxpool.Pool, windows []coordinator.Window) ([]Verification, error) {
	starts, ends := make([]time.Time, len(windows)), make([]time.Time, len(windows))
	for i, w := range windows {
		starts[i], ends[i] = w.Start.UTC(), w.End.UTC()
	}
	rows, err := pool.Query(ctx, `SELECT count(s.submitter) FILTER (WHERE s.verified IS NULL)::int, count(s.submitter)::int
		FROM unnest($1::timestamp[], $2::timestamp[]) WITH ORDINALITY AS w(s, e, n)
		LEFT JOIN submissions s ON s.submitted_at >= w.s AND s.submitted_at < w.e
		GROUP BY w.n ORDER BY w.n`, starts, ends)
	if err != nil {
		return nil, fmt.Errorf("counting the unverified submissions: %w", err)
	}
	out := make([]Verification, 0, len(windows))
	i := 0
	var v Verification
	if _, err := pgx.ForEachRow(rows, []any{&v.Unverified, &v.Total}, func() error {
		v.Window = windows[i]
		out = append(out, v)
		i++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("counting the unverified submissions: %w", err)
	}
	return out, nil
}
