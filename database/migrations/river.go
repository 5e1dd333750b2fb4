package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// RiverVersion is the River schema version migration 00007 brings the
// database to. A River upgrade that needs a newer schema adds a migration
// with a higher target; River records its own versions in river_migration,
// so bringing a schema to a version it already has does nothing.
const RiverVersion = 6

// Go returns the Go migrations: 00007 creates River's tables (the delivery
// queue of alerts) with River's own migrator, pinned to RiverVersion.
func Go() []*goose.Migration {
	return []*goose.Migration{
		goose.NewGoMigration(7,
			&goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error { return migrateRiver(ctx, db, RiverVersion) }},
			&goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error { return migrateRiver(ctx, db, -1) }}),
	}
}

// migrateRiver runs River's migrator up to version (down to nothing when
// version is -1) on a small pool with the settings of db's connections.
// River's Migrate applies each River version in its own transaction (a
// version may use an enum value an earlier one added, which PostgreSQL
// refuses in the transaction that added it).
func migrateRiver(ctx context.Context, db *sql.DB, version int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("river migration: %w", err)
	}
	defer conn.Close()
	var cfg *pgxpool.Config
	if err := conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("river migration: the database/sql driver is %T, not pgx", driverConn)
		}
		cfg, err = pgxpool.ParseConfig("")
		if err != nil {
			return err
		}
		cfg.ConnConfig = c.Conn().Config().Copy()
		cfg.MaxConns = 1
		return nil
	}); err != nil {
		return fmt.Errorf("river migration: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("river migration: connecting: %w", err)
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return fmt.Errorf("river migration: %w", err)
	}
	dir := rivermigrate.DirectionUp
	if version < 0 {
		dir = rivermigrate.DirectionDown
	}
	if _, err := migrator.Migrate(ctx, dir, &rivermigrate.MigrateOpts{TargetVersion: version}); err != nil {
		return fmt.Errorf("river migration to version %d: %w", version, err)
	}
	return nil
}
