package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// sendOperationAlert sends the operator alert of a rescore or reverify run
// (WEBHOOK_URL; nothing when it is unset) through the alert outbox, as the
// loop sends its batch alerts. Only the coordinator holding the advisory
// lock works the delivery queue: when no coordinator runs, this command
// takes the lock and delivers (waiting up to ALERT_DRAIN_TIMEOUT); when one
// runs, its queue delivers. A failure to send is logged as an ERROR and
// does not change the command's outcome.
func sendOperationAlert(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger, o alert.Operation) {
	msgs := operatorAlerts(cfg).Operation(o)
	if len(msgs) == 0 {
		return
	}
	// A signal that stopped the command must not stop its alert.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Alerts.DrainTimeout+30*time.Second)
	defer cancel()
	q, err := queue.New(pool, true, queueOptions(cfg, log))
	if err != nil {
		log.Error("the "+o.Command+" alert could not be sent", "error", err)
		return
	}
	now := time.Now().UnixNano()
	out := make([]queue.Outgoing, len(msgs))
	for i, m := range msgs {
		out[i] = alerting.OperatorMessage(m, coordinator.Window{Start: o.From, End: o.To}, o.Command, i, now)
	}
	if err := q.Enqueue(ctx, out); err != nil {
		log.Error("the "+o.Command+" alert could not be queued", "error", err)
		return
	}
	lock, err := postgres.Acquire(ctx, pool, 0)
	if errors.Is(err, postgres.ErrLocked) {
		log.Info("the " + o.Command + " alert is queued; the running coordinator delivers it")
		return
	}
	if err != nil {
		log.Error("the "+o.Command+" alert is queued but not delivered now (the next run delivers it)", "error", err)
		return
	}
	defer lock.Release()
	if err := q.Start(ctx); err != nil {
		log.Error("the "+o.Command+" alert is queued but not delivered now (the next run delivers it)", "error", err)
		return
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := q.Stop(stop); err != nil {
			log.Warn("stopping the alert queue", "error", err)
		}
	}()
	left, err := q.Drain(ctx, cfg.Alerts.DrainTimeout)
	switch {
	case err != nil:
		log.Error("waiting for the "+o.Command+" alert's delivery", "error", err)
	case left > 0:
		log.Warn("alerts still queued at exit; they are delivered by the next run", "pending", left, "waited", cfg.Alerts.DrainTimeout)
	default:
		log.Info("the " + o.Command + " alert is delivered")
	}
}
