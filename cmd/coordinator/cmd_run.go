package main

import (
	"context"
	"fmt"
)

// RunCmd is "coordinator run": the survey loop.
type RunCmd struct {
	Batches int `placeholder:"N" help:"Process exactly N batches, then exit (0: run until stopped)."`
}

// Help is the detail "coordinator run --help" shows.
func (RunCmd) Help() string {
	return `Takes the survey interval after the last batch in bot_logs, waits until it
is over, launches the verifiers (WORKER_MODE), scores it in one transaction and
goes on. SIGINT or SIGTERM stops it cleanly; an uncommitted batch is rolled back.

Examples:

    coordinator run
    coordinator run --batches 3    # three batches (backfills, tests), then exit`
}

// Validate refuses a negative batch count.
func (c *RunCmd) Validate() error {
	if c.Batches < 0 {
		return fmt.Errorf("--batches must be >= 0, got %d", c.Batches)
	}
	return nil
}

// Run runs the loop.
func (c *RunCmd) Run(ctx context.Context, env *Env) error {
	return run(ctx, c.Batches, env.Stdout)
}
