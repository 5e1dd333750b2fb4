// Package postgres is the coordinator's PostgreSQL adapter (pgx): schema
// migrations, the database tasks, the submission source and the batch ledger.
//
// Every entry point that works in the coordinator's database takes the one
// kind of handle, the *pgxpool.Pool that Open returns (Database holds it
// too). The few that need a session of their own — Migrate (goose's
// migration lock), Cleanup (the notices it collects), Lock and Acquire (a
// session advisory lock lives as long as its connection) — open it with the
// pool's connection settings. Only CreateDatabase, DatabaseExists and
// DropDatabase take the config.Postgres: they act on the server, around a
// database that may not exist yet.
package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/delegation-program/uptime-coordinator/database/migrations"
)

// Option configures a pool opened by Open.
type Option func(*pgxpool.Config)

// WithStatementTimeout sets the server's statement_timeout of every
// connection of the pool (0: the server's default).
func WithStatementTimeout(d time.Duration) Option {
	return func(c *pgxpool.Config) {
		if d > 0 {
			c.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(d.Milliseconds(), 1), 10)
		}
	}
}

// Open connects a pool to connString and checks that the server answers.
func Open(ctx context.Context, connString string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parsing postgres connection settings: %w", err)
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to postgres %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// MigrationResult says which migrations Migrate applied.
type MigrationResult struct {
	Applied []int64 // versions applied now
	Current int64   // schema version after the run
}

// session returns the pool's connection settings for a connection of its
// own, without the pool's statement_timeout (WithStatementTimeout bounds a
// batch step; a migration or a clean-up may rightly take longer).
func session(pool *pgxpool.Pool) *pgx.ConnConfig {
	cfg := pool.Config().ConnConfig.Copy()
	delete(cfg.RuntimeParams, "statement_timeout")
	return cfg
}

// Migrate applies every pending migration to pool's database, on
// connections of its own. It holds a Postgres advisory lock while it runs,
// so concurrent callers apply each migration once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (MigrationResult, error) {
	db := stdlib.OpenDB(*session(pool))
	defer db.Close()
	return migrate(ctx, db, migrations.FS)
}

// PendingMigrations lists the versions of the embedded migrations not yet
// applied to pool's database. It only reads: no lock, and no
// goose version table is created when there is none (then every migration
// is pending).
func PendingMigrations(ctx context.Context, pool *pgxpool.Pool) ([]int64, error) {
	var table *string
	if err := pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version')::text`).Scan(&table); err != nil {
		return nil, fmt.Errorf("looking for the schema version table: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithGoMigrations(migrations.Go()...))
	if err != nil {
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	var pending []int64
	if table == nil {
		for _, src := range provider.ListSources() {
			pending = append(pending, src.Version)
		}
		return pending, nil
	}
	status, err := provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the schema version: %w", err)
	}
	for _, st := range status {
		if st.State == goose.StatePending {
			pending = append(pending, st.Source.Version)
		}
	}
	return pending, nil
}

func migrate(ctx context.Context, db *sql.DB, fsys fs.FS) (MigrationResult, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return MigrationResult{}, fmt.Errorf("creating migration lock: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker),
		goose.WithGoMigrations(migrations.Go()...))
	if err != nil {
		return MigrationResult{}, fmt.Errorf("loading migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return MigrationResult{}, fmt.Errorf("applying migrations: %w", err)
	}
	var res MigrationResult
	for _, r := range results {
		res.Applied = append(res.Applied, r.Source.Version)
	}
	res.Current, err = provider.GetDBVersion(ctx)
	if err != nil {
		return res, fmt.Errorf("reading schema version: %w", err)
	}
	return res, nil
}
