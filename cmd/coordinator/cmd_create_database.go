package main

import (
	"context"

	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// CreateDatabaseCmd is "coordinator create-database".
type CreateDatabaseCmd struct{}

// Help is the detail "coordinator create-database --help" shows.
func (CreateDatabaseCmd) Help() string {
	return `Connects with POSTGRES_* to the server, creates POSTGRES_DB when it is missing,
then applies the schema migrations. Idempotent.

Example:

    POSTGRES_HOST=localhost POSTGRES_DB=delegation POSTGRES_USER=postgres coordinator create-database`
}

// Run creates and migrates the database.
func (CreateDatabaseCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.CreateDatabase(ctx, cfg, env.Stdout)
}
