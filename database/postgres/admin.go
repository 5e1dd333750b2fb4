package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
)

// maintenanceDB is the database the server-level tasks connect to.
const maintenanceDB = "postgres"

// CreateDatabase creates cfg.DB when it does not exist, then applies every
// pending migration. It is idempotent.
func CreateDatabase(ctx context.Context, cfg config.Postgres) (created bool, res MigrationResult, err error) {
	conn, err := pgx.Connect(ctx, cfg.ConnString(maintenanceDB))
	if err != nil {
		return false, res, fmt.Errorf("connecting to the %q database to create %q: %w", maintenanceDB, cfg.DB, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, cfg.DB).Scan(&exists); err != nil {
		return false, res, fmt.Errorf("checking whether database %q exists: %w", cfg.DB, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.DB}.Sanitize()); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42P04" { // duplicate_database: created concurrently
				return false, res, fmt.Errorf("creating database %q: %w", cfg.DB, err)
			}
		} else {
			created = true
		}
	}
	pool, err := Open(ctx, cfg.ConnString(""))
	if err != nil {
		return created, res, err
	}
	defer pool.Close()
	res, err = Migrate(ctx, pool)
	return created, res, err
}

// DatabaseExists reports whether cfg.DB exists on the server.
func DatabaseExists(ctx context.Context, cfg config.Postgres) (bool, error) {
	conn, err := pgx.Connect(ctx, cfg.ConnString(maintenanceDB))
	if err != nil {
		return false, fmt.Errorf("connecting to the %q database: %w", maintenanceDB, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, cfg.DB).Scan(&exists); err != nil {
		return false, fmt.Errorf("checking whether database %q exists: %w", cfg.DB, err)
	}
	return exists, nil
}

// DropDatabase drops cfg.DB. It reports false when there was nothing to drop.
func DropDatabase(ctx context.Context, cfg config.Postgres) (dropped bool, err error) {
	conn, err := pgx.Connect(ctx, cfg.ConnString(maintenanceDB))
	if err != nil {
		return false, fmt.Errorf("connecting to the %q database to drop %q: %w", maintenanceDB, cfg.DB, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, cfg.DB).Scan(&exists); err != nil {
		return false, fmt.Errorf("checking whether database %q exists: %w", cfg.DB, err)
	}
	if !exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{cfg.DB}.Sanitize()); err != nil {
		return false, fmt.Errorf("dropping database %q: %w", cfg.DB, err)
	}
	return true, nil
}

// ErrBotLogsNotEmpty is returned by InitDatabase when bot_logs already has
// rows and override was not requested.
var ErrBotLogsNotEmpty = errors.New("table bot_logs is not empty; nothing inserted (use --override-empty, or OVERRIDE_EMPTY=1 with mage, to insert anyway)")

// InitDatabase inserts the starting bot_logs row, as the original's
// init-database task: files_processed -1, processing_time 0 and
// file_timestamps = batch_start_epoch = batch_end_epoch = at. It refuses when
// bot_logs has rows, unless override is set.
func InitDatabase(ctx context.Context, pool *pgxpool.Pool, at time.Time, override bool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if !override {
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM bot_logs`).Scan(&n); err != nil {
				return fmt.Errorf("counting bot_logs rows: %w", err)
			}
			if n > 0 {
				return ErrBotLogsNotEmpty
			}
		}
		epoch := at.Unix()
		if _, err := tx.Exec(ctx, `INSERT INTO bot_logs (processing_time, files_processed, file_timestamps, batch_start_epoch, batch_end_epoch)
			VALUES (0, -1, $1, $2, $2)`, time.Unix(epoch, 0).UTC(), epoch); err != nil {
			return fmt.Errorf("inserting the starting bot_logs row: %w", err)
		}
		// A new starting point changes the scoring window: recompute in full.
		if _, err := tx.Exec(ctx, `DELETE FROM coordinator_scoreboard`); err != nil {
			return fmt.Errorf("resetting the scoreboard state: %w", err)
		}
		return nil
	})
}

// CreateROUser creates the read-only user (when missing) and grants it
// CONNECT on the database, USAGE on schema public, SELECT on every table and,
// through default privileges, on tables created later. Nothing more. Grants
// are re-applied when the user exists, so the task is idempotent.
func CreateROUser(ctx context.Context, pool *pgxpool.Pool, db, user, password string) (created bool, err error) {
	if user == "" {
		return false, errors.New("POSTGRES_RO_USER: missing; expected the name of the read-only user to create")
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, user).Scan(&exists); err != nil {
			return fmt.Errorf("checking whether role %q exists: %w", user, err)
		}
		ident := pgx.Identifier{user}.Sanitize()
		if !exists && password == "" {
			return errors.New("POSTGRES_RO_PASSWORD: missing; expected the password of the read-only user")
		}
		if password != "" {
			// The password never travels in a statement (a failing one is
			// written to the server log): a SCRAM-SHA-256 verifier computed
			// here does.
			verifier, err := scramVerifier(password, nil, scramIterations)
			if err != nil {
				return err
			}
			literal := "'" + verifier + "'" // base64 and $ : only, no quote to escape
			switch {
			case !exists:
				if _, err := tx.Exec(ctx, "CREATE ROLE "+ident+" LOGIN PASSWORD "+literal); err != nil {
					return fmt.Errorf("creating role %q: %w", user, err)
				}
				created = true
			case !passwordUnchanged(ctx, tx, user, password):
				if _, err := tx.Exec(ctx, "ALTER ROLE "+ident+" PASSWORD "+literal); err != nil {
					return fmt.Errorf("setting the password of role %q: %w", user, err)
				}
			}
		}
		// TEMP is granted to PUBLIC by default: revoking it from the role
		// alone would change nothing. The database owner keeps it.
		for _, stmt := range []string{
			"REVOKE TEMPORARY ON DATABASE " + pgx.Identifier{db}.Sanitize() + " FROM PUBLIC",
			"REVOKE TEMPORARY ON DATABASE " + pgx.Identifier{db}.Sanitize() + " FROM " + ident,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("revoking TEMP from %q: %w", user, err)
			}
		}
		for _, stmt := range []string{
			"GRANT CONNECT ON DATABASE " + pgx.Identifier{db}.Sanitize() + " TO " + ident,
			"GRANT USAGE ON SCHEMA public TO " + ident,
			"GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + ident,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO " + ident,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("granting read-only access to %q: %w", user, err)
			}
		}
		return grantSubscriptions(ctx, tx, ident)
	})
	return created, err
}

// grantSubscriptions lets the read-only user, with which `coordinator serve`
// connects, manage alert subscriptions and nothing else: INSERT and DELETE
// on alert_subscriptions, SELECT on its columns but url and secret (which
// hold tokens), and INSERT on alert_outbox and River's river_job for test
// messages. Skipped on a database without the alert tables (not migrated).
func grantSubscriptions(ctx context.Context, tx pgx.Tx, ident string) error {
	var present bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('alert_subscriptions') IS NOT NULL AND to_regclass('river_job') IS NOT NULL`).Scan(&present); err != nil {
		return fmt.Errorf("looking for the alert tables: %w", err)
	}
	if !present {
		return nil
	}
	for _, stmt := range []string{
		"REVOKE SELECT ON alert_subscriptions FROM " + ident,
		"GRANT SELECT (id, all_producers, producers, channel, host, token_hash, rules, file_name, created_at) ON alert_subscriptions TO " + ident,
		"GRANT INSERT, DELETE ON alert_subscriptions TO " + ident,
		"GRANT INSERT ON alert_outbox, river_job TO " + ident,
		"GRANT USAGE ON SEQUENCE river_job_id_seq TO " + ident,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("granting subscription management to %s: %w", ident, err)
		}
	}
	return nil
}

// Cleanup calls cleanup_old_data(days) in pool's database and returns the
// notices it raised (its summary of deleted rows).
func Cleanup(ctx context.Context, pool *pgxpool.Pool, days int) ([]string, error) {
	if days < 1 {
		return nil, fmt.Errorf("days must be >= 1, got %d", days)
	}
	cfg := session(pool) // of its own, to collect its notices
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT cleanup_old_data($1)`, days); err != nil {
		return notices, fmt.Errorf("cleanup_old_data(%d): %w", days, err)
	}
	return notices, nil
}

// passwordUnchanged reports whether role's stored verifier is already that
// of password; false when it cannot be read (pg_authid needs a superuser),
// so that the password is then set again.
func passwordUnchanged(ctx context.Context, tx pgx.Tx, role, password string) bool {
	var stored *string
	if _, err := tx.Exec(ctx, "SAVEPOINT read_authid"); err != nil {
		return false
	}
	err := tx.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored)
	if err != nil {
		_, _ = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT read_authid")
		return false
	}
	return stored != nil && scramMatches(*stored, password)
}
