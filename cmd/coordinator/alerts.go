package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// alerts is the alerting side of run: the rules' step in every batch
// transaction, the operator alerts, and the delivery queue.
type alerts struct {
	log   *slog.Logger
	queue *queue.Queue
	eval  *alerting.Evaluator
	drain time.Duration
}

// queueOptions are the delivery queue's options from the configuration.
func queueOptions(cfg *config.Config, log *slog.Logger) queue.Options {
	return queue.Options{
		Policy:        outbound.Policy{AllowPrivate: cfg.Alerts.AllowPrivateNetworks},
		OperatorURL:   cfg.Alerts.WebhookURL,
		RetryBase:     cfg.Alerts.RetryBase,
		RatePerMinute: cfg.Alerts.RatePerMinute,
		Logger:        log,
	}
}

// setupAlerts builds the queue and the evaluator and starts delivering.
func setupAlerts(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*alerts, error) {
	q, err := queue.New(pool, true, queueOptions(cfg, log))
	if err != nil {
		return nil, err
	}
	if err := reg.Register(queue.Collector(pool, log)); err != nil {
		return nil, fmt.Errorf("registering the alert metrics: %w", err)
	}
	a := &alerts{log: log, queue: q, drain: cfg.Alerts.DrainTimeout,
		eval: &alerting.Evaluator{Queue: q, Operator: operatorAlerts(cfg), PublicURL: cfg.Alerts.PublicURL, Logger: log}}
	if a.eval.Operator.Enabled() {
		log.Info("operator alerts are sent to WEBHOOK_URL through the alert queue")
	} else {
		log.Info("WEBHOOK_URL is not set: operator alerts are off")
	}
	if cfg.Alerts.SubscriptionsFile != "" {
		subs := &subscriptions.Service{Pool: pool, Policy: outbound.Policy{AllowPrivate: cfg.Alerts.AllowPrivateNetworks}}
		entries, err := subs.ReadFile(ctx, cfg.Alerts.SubscriptionsFile)
		if err != nil {
			return nil, err
		}
		created, kept, deleted, err := subs.Reconcile(ctx, entries)
		if err != nil {
			return nil, fmt.Errorf("ALERT_SUBSCRIPTIONS_FILE: %w", err)
		}
		log.Info("alert subscriptions of ALERT_SUBSCRIPTIONS_FILE reconciled", "created", created, "kept", kept, "deleted", deleted)
	}
	// The queue outlives a signal to the loop, so that it stops gracefully.
	if err := q.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return a, nil
}

// Apply adds the alerts' step to the batch transaction and the abandoned
// batch alert to the engine's failure hook.
func (a *alerts) Apply(db *postgres.Database, e *coordinator.Engine) {
	db.Steps = append(db.Steps, postgres.Step{Name: alerting.StepName, Run: a.eval.Step})
	onFailure := e.OnFailure
	e.OnFailure = func(ctx context.Context, f coordinator.Failure) {
		if onFailure != nil {
			onFailure(ctx, f)
		}
		a.eval.OnFailure(context.WithoutCancel(ctx), f)
	}
}

// Drain waits, bounded by ALERT_DRAIN_TIMEOUT, until every queued alert is
// delivered (run --batches N, so that a bounded run is observable).
func (a *alerts) Drain(ctx context.Context) {
	left, err := a.queue.Drain(ctx, a.drain)
	switch {
	case err != nil:
		a.log.Error("waiting for alert deliveries", "error", err)
	case left > 0:
		a.log.Warn("alerts still queued at exit; they are delivered by the next run", "pending", left, "waited", a.drain)
	default:
		a.log.Info("every queued alert is delivered")
	}
}

// Stop stops the queue, letting running deliveries finish for a few
// seconds; an interrupted one is retried by the next run.
func (a *alerts) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.queue.Stop(ctx); err != nil {
		a.log.Warn("stopping the alert queue", "error", err)
	}
}

// operatorAlerts is the operator alerter, with every secret of the
// configuration masked in its messages.
func operatorAlerts(cfg *config.Config) *alert.Alerter {
	a := alert.FromConfig(cfg.Alerts)
	a.Mask = config.SecretMasker(cfg.Secrets())
	return a
}
