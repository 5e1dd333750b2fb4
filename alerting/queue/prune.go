package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
)

// OutboxRetention is how long outbox rows are kept: delivered messages and
// dead letters alike (a delivery is final long before: retries end after
// about 8 hours with the defaults).
const OutboxRetention = 30 * 24 * time.Hour

// pruneArgs is the daily job that deletes outbox rows older than
// OutboxRetention.
type pruneArgs struct{}

func (pruneArgs) Kind() string { return "alert_outbox_prune" }

type pruneWorker struct {
	river.WorkerDefaults[pruneArgs]
	q *Queue
}

func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[pruneArgs]) error {
	tag, err := w.q.pool.Exec(ctx, `DELETE FROM alert_outbox WHERE created_at < $1`, w.q.opts.Now().Add(-OutboxRetention))
	if err != nil {
		return fmt.Errorf("pruning the alert outbox: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		w.q.opts.Logger.Info("old alert outbox rows deleted", "rows", n, "older_than", OutboxRetention)
	}
	return nil
}

func prunePeriodically() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(24*time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return pruneArgs{}, nil },
		&river.PeriodicJobOpts{ID: "alert_outbox_prune", RunOnStart: true})
}
