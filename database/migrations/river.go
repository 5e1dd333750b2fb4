package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"
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
// version is -1) in one pgx transaction on a connection of db.
func migrateRiver(ctx context.Context, db *sql.DB, version int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("river migration: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("river migration: the database/sql driver is %T, not pgx", driverConn)
		}
		migrator, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return fmt.Errorf("river migration: %w", err)
		}
		// One transaction per River version: a version may use an enum
		// value an earlier one added, which PostgreSQL refuses in the
		// transaction that added it.
		dir := rivermigrate.DirectionUp
		if version < 0 {
			dir = rivermigrate.DirectionDown
		}
		for {
			var res *rivermigrate.MigrateResult
			err := pgx.BeginFunc(ctx, c.Conn(), func(tx pgx.Tx) error {
				var err error
				res, err = migrator.MigrateTx(ctx, tx, dir, &rivermigrate.MigrateOpts{MaxSteps: 1, TargetVersion: version})
				return err
			})
			if err != nil {
				return fmt.Errorf("river migration towards version %d: %w", version, err)
			}
			if len(res.Versions) == 0 {
				return nil
			}
		}
	})
}
