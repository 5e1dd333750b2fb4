package appstatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// Source yields the registrations (a *Sheet).
type Source interface {
	Contacts(ctx context.Context) ([]Contact, error)
}

// Defaults of an Updater.
const (
	DefaultAttempts = 3
	DefaultBackoff  = 2 * time.Second
	DefaultTimeout  = 2 * time.Minute
)

// Updater copies the registrations into nodes before each batch.
type Updater struct {
	Source Source
	Pool   *pgxpool.Pool
	// Attempts is the number of tries of one update (default
	// DefaultAttempts); Backoff the first delay between tries, doubling
	// (default DefaultBackoff); Timeout bounds each try (default
	// DefaultTimeout).
	Attempts int
	Backoff  time.Duration
	Timeout  time.Duration
	Logger   *slog.Logger
}

func (u *Updater) log() *slog.Logger {
	if u.Logger != nil {
		return u.Logger
	}
	return slog.Default()
}

// BeforeBatch reads the registrations and updates the nodes, retrying
// transient failures with backoff. Its error says why the update failed; the
// engine logs it and goes on with the batch.
func (u *Updater) BeforeBatch(ctx context.Context) error {
	attempts := u.Attempts
	if attempts < 1 {
		attempts = DefaultAttempts
	}
	delay := u.Backoff
	if delay <= 0 {
		delay = DefaultBackoff
	}
	b := retrypolicy.Policy{First: delay}.BackOff() // doubling, never capped
	attempt, last := 0, error(nil)
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		contacts, updated, err := u.update(ctx)
		if err == nil {
			u.log().Info("application status updated", "registrations", contacts, "nodes_updated", updated, "attempt", attempt)
			return struct{}{}, nil
		}
		last = err
		if IsPermanent(err) || ctx.Err() != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(b),
		backoff.WithMaxTries(uint(attempts)),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			u.log().Warn("application status update failed; retrying", "attempt", attempt, "retry_in", next, "error", err)
		}))
	if err == nil {
		return nil
	}
	if last != nil && !errors.Is(err, last) {
		err = errors.Join(last, err) // stopped while waiting to retry
	}
	return fmt.Errorf("application status update (try %d of %d): %w", attempt, attempts, err)
}

func (u *Updater) update(ctx context.Context) (contacts int, updated int64, err error) {
	timeout := u.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cs, err := u.Source.Contacts(ctx)
	if err != nil {
		return 0, 0, err
	}
	n, err := postgres.UpdateApplicationStatus(ctx, u.Pool, cs)
	if err != nil {
		return len(cs), 0, err
	}
	return len(cs), n, nil
}
