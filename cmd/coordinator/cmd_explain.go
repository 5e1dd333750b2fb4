package main

import (
	"context"
	"time"

	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// ExplainCmd is "coordinator explain PRODUCER_KEY [--from T] [--to T] [--format text|json]".
type ExplainCmd struct {
	ProducerKey string `arg:"" name:"producer_key" help:"The block producer's public key (B62q...)."`
	From        string `placeholder:"T" help:"First batch end to include: RFC 3339 or \"YYYY-MM-DD HH:MM:SS\" (UTC). Default: 24 hours before --to."`
	To          string `placeholder:"T" help:"Batch ends before T are included. Default: now."`
	Format      string `enum:"text,json" default:"text" help:"Output format: text or json."`

	from, to time.Time
}

// Help is the detail "coordinator explain --help" shows.
func (ExplainCmd) Help() string {
	return `For every batch whose window ends in [--from, --to), says whether the producer
got a point and, if not, why: off_chain (its valid submissions named no hash on
the consensus chain), invalid (every submission failed verification; counted per
verifier error class), unverified (the verifier never marked some), or
no_submission. Batches scored before evidence was recorded are derived from
points_summary and the submissions table (marked *), unknown where those were
cleaned up. Reads the database only: works with the read-only user.

Exit status: 1 when the key is unknown, 2 on bad flags.

Examples:

    coordinator explain B62qrPN5Y5yq8kGE3FbVKbGTdTAJNdtNtB5sNVpxyRwWGcDEhpMzc8g
    coordinator explain B62q... --from "2024-06-01 00:00:00" --to 2024-06-02T00:00:00Z --format json`
}

// Validate resolves the range, so that a bad time is a usage error.
func (c *ExplainCmd) Validate() error {
	from, to, err := inspect.Range(c.From, c.To, time.Now())
	if err != nil {
		return err
	}
	c.from, c.to = from, to
	return nil
}

// Run explains.
func (c *ExplainCmd) Run(ctx context.Context, env *Env) error {
	cfg, err := tasks.Postgres()
	if err != nil {
		return err
	}
	return tasks.Explain(ctx, cfg, c.ProducerKey, c.from, c.to, c.Format, env.Stdout)
}
