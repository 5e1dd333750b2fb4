package main

import (
	"context"

	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// StatusCmd is "coordinator status [--format text|json]".
type StatusCmd struct {
	Format string `enum:"text,json" default:"text" help:"Output format: text or json."`
}

// Help is the detail "coordinator status --help" shows.
func (StatusCmd) Help() string {
	return `Shows the last committed batch and its window, how far behind real time the
loop is (and how many batches it has to catch up), the last failed batch
attempt, which session holds the coordinator's advisory lock (a running
coordinator names its pid and host), the latest batches with their counts and
verifier error-class shares, and the schema version. Reads the database only:
works with the read-only user.

Examples:

    coordinator status
    coordinator status --format json`
}

// Run prints the status.
func (c *StatusCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.Status(ctx, cfg, c.Format, env.Stdout)
}
