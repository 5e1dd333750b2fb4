package main

import (
	"context"

	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// CreateROUserCmd is "coordinator create-ro-user".
type CreateROUserCmd struct{}

// Help is the detail "coordinator create-ro-user --help" shows.
func (CreateROUserCmd) Help() string {
	return `Creates POSTGRES_RO_USER with password POSTGRES_RO_PASSWORD and grants it
CONNECT, USAGE and SELECT on every table of POSTGRES_DB, now and later; nothing
more. Idempotent: when the user exists, the grants are applied again.

Example:

    POSTGRES_RO_USER=leaderboard POSTGRES_RO_PASSWORD=... coordinator create-ro-user`
}

// Run creates the read-only user.
func (CreateROUserCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.CreateROUser(ctx, cfg, env.Stdout)
}
