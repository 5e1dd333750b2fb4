package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/rescore"
)

// RescoreCmd is "coordinator rescore --from T --to T [--dry-run] [--format text|json]".
type RescoreCmd struct {
	From   string `placeholder:"T" help:"Re-score the batches whose window ends at or after T (RFC 3339, or \"YYYY-MM-DD HH:MM:SS\" UTC)."`
	To     string `placeholder:"T" help:"... and before T."`
	DryRun bool   `help:"Change nothing: print who would gain or lose points."`
	Format string `default:"text" enum:"text,json" help:"Output format: text or json."`
}

// Help is the detail "coordinator rescore --help" shows.
func (RescoreCmd) Help() string {
	return `Re-scores every committed batch whose window end lies in [--from, --to) from
the submissions as they are now (after a verifier fix), in window order, each
from the previous batch's shortlist as the loop does, and writes only what
changes: points, points_summary, bot_logs_statehash, the evidence rows and
bot_logs.files_processed / file_timestamps; batches after the range are
re-scored too while the shortlist they start from changed. score_history is
then recomputed from the first re-scored batch to the latest, and the nodes'
scores. The result is the database a scratch run on the same submissions
would have written. One transaction: a crash leaves the old result, a rerun
finishes the job; the loop's next commit waits for it (batch lock). --to may
not pass the end of the window the loop is working on.

--dry-run writes nothing and prints, per producer whose outcome changes, its
points (batches with a point) in the range before and after, score_percent now
and after, and the batches gained and lost.

Examples:

    coordinator rescore --from 2024-06-01T00:00:00Z --to 2024-06-08T00:00:00Z --dry-run
    coordinator rescore --from "2024-06-01 00:00:00" --to "2024-06-08 00:00:00" --format json`
}

// Validate checks the range.
func (c *RescoreCmd) Validate() error {
	_, _, err := rescore.Range(c.From, c.To)
	return err
}

// Run re-scores the range.
func (c *RescoreCmd) Run(ctx context.Context, env *Env) error {
	from, to, err := rescore.Range(c.From, c.To)
	if err != nil {
		return usageError{err}
	}
	cfg, log, pool, err := openForRescore(ctx, env, "rescore")
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := runRescore(ctx, env, cfg, log, pool, from, to, c.DryRun, c.Format)
	if !c.DryRun {
		o := alert.Operation{Command: "rescore", From: from, To: to, Err: err}
		if rep != nil {
			o = rescore.Operation("rescore", rep)
		}
		sendOperationAlert(ctx, cfg, pool, log, o)
	}
	return err
}

// runRescore re-scores the range and writes the report; rep is nil when
// the rescore failed (nothing changed).
func runRescore(ctx context.Context, env *Env, cfg *config.Config, log *slog.Logger, pool *pgxPool, from, to time.Time, dry bool, format string) (*postgres.RescoreReport, error) {
	bulk, why, err := postgres.CanBulkWritePoints(ctx, pool)
	if err != nil {
		return nil, err
	}
	if !bulk && !dry {
		log.Info("points are written row-checked", "reason", why)
	}
	began := time.Now()
	rep, err := postgres.Rescore(ctx, pool, postgres.RescoreOptions{From: from, To: to, Interval: cfg.Runtime.SurveyInterval,
		UptimeDays: cfg.Runtime.UptimeDays, DryRun: dry, Bulk: bulk, Checkpoint: checkpoint()})
	if err != nil {
		log.Error("rescore failed: nothing was changed", "from", from, "to", to, "error", err)
		return nil, err
	}
	log.Info("rescore finished", append(rescore.LogAttrs(rep), "seconds", time.Since(began).Seconds())...)
	return rep, rescore.Write(env.Stdout, rep, format)
}
