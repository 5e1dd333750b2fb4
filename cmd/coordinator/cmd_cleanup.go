package main

import (
	"context"
	"fmt"

	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// CleanupCmd is "coordinator cleanup --days N".
type CleanupCmd struct {
	Days int `required:"" placeholder:"N" help:"Delete data older than N days (N >= 1)."`
}

// Help is the detail "coordinator cleanup --help" shows.
func (CleanupCmd) Help() string {
	return `Calls the database function cleanup_old_data(N): deletes batches, points and
submissions older than N days.

Example:

    coordinator cleanup --days 180`
}

// Validate refuses N < 1.
func (c *CleanupCmd) Validate() error {
	if c.Days == 0 {
		return fmt.Errorf("--days N is required (N >= 1)")
	}
	if c.Days < 1 {
		return fmt.Errorf("--days must be >= 1, got %d", c.Days)
	}
	return nil
}

// Run deletes the old data.
func (c *CleanupCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.Cleanup(ctx, cfg, c.Days, env.Stdout)
}
