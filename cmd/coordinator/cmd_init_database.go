package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// InitDatabaseCmd is "coordinator init-database".
type InitDatabaseCmd struct {
	BatchEndEpoch string `placeholder:"TIME" help:"Start at TIME: unix seconds, \"YYYY-MM-DD HH:MM:SS\" (UTC) or RFC 3339 such as 2024-06-05T00:00:00Z. Default: now."`
	MinsAgo       *int   `placeholder:"N" help:"Start N minutes ago (instead of --batch-end-epoch)."`
	OverrideEmpty bool   `help:"Insert the row even when bot_logs already has rows."`

	at time.Time
}

// Help is the detail "coordinator init-database --help" shows.
func (InitDatabaseCmd) Help() string {
	return `Inserts the starting bot_logs row (files_processed = -1): the first batch of
"coordinator run" begins at its batch_end_epoch. Refuses when bot_logs has rows,
unless --override-empty. A date and time without a zone is UTC.

Examples:

    coordinator init-database                                   # start now
    coordinator init-database --mins-ago 20
    coordinator init-database --batch-end-epoch 1717545600
    coordinator init-database --batch-end-epoch "2024-06-05 00:00:00"
    coordinator init-database --batch-end-epoch 2024-06-05T00:00:00Z --override-empty`
}

// Validate parses the starting time, so that a bad value is a usage error.
func (c *InitDatabaseCmd) Validate() error {
	at, err := tasks.ParseStartTime(c.BatchEndEpoch, c.MinsAgo, time.Now())
	switch {
	case errors.Is(err, tasks.ErrBothStartTimes):
		return errors.New("--batch-end-epoch and --mins-ago exclude each other; give one")
	case err != nil && c.MinsAgo != nil:
		return fmt.Errorf("--mins-ago: %w", err)
	case err != nil:
		return fmt.Errorf("--batch-end-epoch: %w", err)
	}
	c.at = at
	return nil
}

// Run inserts the row.
func (c *InitDatabaseCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.InitDatabaseAt(ctx, cfg, c.at, c.OverrideEmpty, env.Stdout)
}
