package main

import (
	"context"

	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// DropDatabaseCmd is "coordinator drop-database".
type DropDatabaseCmd struct{}

// Help is the detail "coordinator drop-database --help" shows.
func (DropDatabaseCmd) Help() string {
	return `Drops POSTGRES_DB and everything in it. There is no confirmation.

Example:

    coordinator drop-database`
}

// Run drops the database.
func (DropDatabaseCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.DropDatabase(ctx, cfg, env.Stdout)
}
