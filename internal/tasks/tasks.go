// Package tasks holds the database tasks (create, initialise, drop, read-only
// user, cleanup) as the coordinator binary's subcommands and the mage targets
// both run them: one implementation, one line of output each.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// Postgres loads the .env file and the POSTGRES_* variables.
func Postgres() (config.Postgres, error) {
	if err := config.LoadDotEnv(""); err != nil {
		return config.Postgres{}, err
	}
	return config.LoadPostgres(config.Environment)
}

// CreateDatabase creates the database when missing and migrates it.
func CreateDatabase(ctx context.Context, cfg config.Postgres, out io.Writer) error {
	created, res, err := postgres.CreateDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	what := "already exists"
	if created {
		what = "created"
	}
	applied := "schema up to date"
	if len(res.Applied) > 0 {
		applied = fmt.Sprintf("applied migrations %v", res.Applied)
	}
	fmt.Fprintf(out, "database %q %s; %s (schema version %d)\n", cfg.DB, what, applied, res.Current)
	return nil
}

// InitDatabase inserts the starting bot_logs row. value and minsAgo are as
// ParseStartTime takes them.
func InitDatabase(ctx context.Context, cfg config.Postgres, value string, minsAgo *int, override bool, out io.Writer) error {
	at, err := ParseStartTime(value, minsAgo, time.Now())
	if err != nil {
		return err
	}
	return InitDatabaseAt(ctx, cfg, at, override, out)
}

// InitDatabaseAt inserts the starting bot_logs row at time at.
func InitDatabaseAt(ctx context.Context, cfg config.Postgres, at time.Time, override bool, out io.Writer) error {
	pool, err := postgres.Open(ctx, cfg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.InitDatabase(ctx, pool, at, override); err != nil {
		if errors.Is(err, postgres.ErrBotLogsNotEmpty) {
			// As the original: an initialised database is left alone and
			// the task succeeds, so it can run as an init step on every start.
			fmt.Fprintln(out, "table bot_logs is not empty; nothing inserted (the database is already initialised; --override-empty inserts anyway)")
			return nil
		}
		return err
	}
	fmt.Fprintf(out, "bot_logs initialised: batch_end_epoch %d (%s UTC); the first batch covers %s onwards\n",
		at.Unix(), at.UTC().Format(time.DateTime), at.UTC().Format(time.DateTime))
	return nil
}

// DropDatabase drops the database.
func DropDatabase(ctx context.Context, cfg config.Postgres, out io.Writer) error {
	dropped, err := postgres.DropDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	if dropped {
		fmt.Fprintf(out, "database %q dropped\n", cfg.DB)
	} else {
		fmt.Fprintf(out, "database %q does not exist; nothing dropped\n", cfg.DB)
	}
	return nil
}

// CreateROUser creates POSTGRES_RO_USER with read-only access.
func CreateROUser(ctx context.Context, cfg config.Postgres, out io.Writer) error {
	if cfg.ROUser == "" {
		return errors.New("POSTGRES_RO_USER: missing; expected the name of the read-only user to create (and POSTGRES_RO_PASSWORD)")
	}
	pool, err := postgres.Open(ctx, cfg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	created, err := postgres.CreateROUser(ctx, pool, cfg.DB, cfg.ROUser, cfg.ROPassword)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(out, "read-only user %q created with SELECT on every table of %q\n", cfg.ROUser, cfg.DB)
	} else {
		fmt.Fprintf(out, "read-only user %q already exists; read-only grants on %q re-applied\n", cfg.ROUser, cfg.DB)
	}
	return nil
}

// Cleanup deletes data older than days (cleanup_old_data).
func Cleanup(ctx context.Context, cfg config.Postgres, days int, out io.Writer) error {
	pool, err := postgres.Open(ctx, cfg.ConnString(""))
	if err != nil {
		return err
	}
	defer pool.Close()
	notices, err := postgres.Cleanup(ctx, pool, days)
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("cleanup of data older than %d days done", days)
	if len(notices) > 0 {
		summary += ": " + notices[len(notices)-1]
	}
	fmt.Fprintln(out, summary)
	return nil
}
