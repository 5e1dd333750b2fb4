package tasks

import (
	"context"
	"io"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
)

// Explain prints why key did or did not get a point in each batch whose
// window ends in [from, to) (see inspect.Explain), as text or JSON. It
// only reads the database. An unknown key returns an error wrapping
// inspect.ErrUnknownProducer.
func Explain(ctx context.Context, cfg config.Postgres, key string, from, to time.Time, format string, out io.Writer) error {
	pool, err := postgres.Open(ctx, cfg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	ex, err := inspect.Explain(ctx, pool, key, from, to)
	if err != nil {
		return err
	}
	if format == inspect.FormatJSON {
		return inspect.WriteJSON(out, ex)
	}
	return inspect.WriteExplanation(out, ex)
}

// Status prints the coordinator's status (see inspect.ReadStatus), as text
// or JSON. It only reads the database.
func Status(ctx context.Context, cfg config.Postgres, format string, out io.Writer) error {
	pool, err := postgres.Open(ctx, cfg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := inspect.ReadStatus(ctx, pool, time.Now())
	if err != nil {
		return err
	}
	if format == inspect.FormatJSON {
		return inspect.WriteJSON(out, st)
	}
	return inspect.WriteStatus(out, st)
}
