package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/appstatus"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/buildinfo"
	"github.com/delegation-program/uptime-coordinator/monitor"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// stallSlack is added to the readiness bound for the engine's wait after a
// window closes, the application status update and retry backoffs.
const stallSlack = 10 * time.Minute

// ops gathers the operational side of the loop: metrics and readiness,
// and the application status update (alerts: see alerts.go).
type ops struct {
	log     *slog.Logger
	addr    string
	ln      net.Listener // bound by Listen
	monitor *monitor.Monitor
	updater *appstatus.Updater // nil with IGNORE_APPLICATION_STATUS
}

// setupOps builds the monitor and the application status
// updater from the configuration. Nothing listens before Serve.
func setupOps(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger) (*ops, error) {
	o := &ops{log: log, addr: cfg.HTTP.MetricsAddr}
	build := buildinfo.Get()
	o.monitor = monitor.New(monitor.Options{
		DB:         pool,
		StallAfter: 2*cfg.Runtime.SurveyInterval + cfg.Workers.Timeout + stallSlack,
		Logger:     log,
		Build:      monitor.BuildInfo{Version: build.Version, Revision: build.Revision, GoVersion: build.GoVersion},
		WorkerMode: cfg.Workers.Mode,
	})
	last, err := (&postgres.Database{Pool: pool}).LastBatch(ctx)
	switch {
	case err == nil:
		o.monitor.SetLastBatchEnd(last.End)
	case errors.Is(err, coordinator.ErrNoBatch):
		// The loop reports this itself; the lag is unknown until a commit.
	default:
		return nil, fmt.Errorf("setting up metrics: %w", err)
	}

	if cfg.AppStatus.Ignore {
		log.Info("IGNORE_APPLICATION_STATUS is set: the application status is not updated")
	} else {
		o.updater = &appstatus.Updater{
			Source: appstatus.NewSheet(cfg.AppStatus.SpreadsheetName, cfg.AppStatus.CredentialsJSON),
			Pool:   pool,
			Logger: log,
		}
	}
	return o, nil
}

// Apply installs the hooks on e, after any e already has: metrics first,
// and the application status update before each batch.
func (o *ops) Apply(e *coordinator.Engine) {
	after, onFailure, busy := e.AfterBatch, e.OnFailure, e.Busy
	e.Busy = func(what string, limit time.Duration) {
		if busy != nil {
			busy(what, limit)
		}
		o.monitor.Busy(what, limit)
	}
	e.AfterBatch = func(ctx context.Context, s *coordinator.Summary) {
		if after != nil {
			after(ctx, s)
		}
		o.monitor.AfterBatch(ctx, s)
	}
	e.OnFailure = func(ctx context.Context, f coordinator.Failure) {
		if onFailure != nil {
			onFailure(ctx, f)
		}
		o.monitor.OnFailure(ctx, f)
	}
	if o.updater == nil {
		return
	}
	before := e.BeforeBatch
	e.BeforeBatch = func(ctx context.Context) error {
		var errs []error
		if before != nil {
			if err := before(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := o.updater.BeforeBatch(ctx); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}

// Workers returns the counters the worker launchers report to.
func (o *ops) Workers() workers.Events { return o.monitor.Workers() }

// Listen binds METRICS_ADDR for /healthz, /readyz and /metrics: an address
// that cannot be bound (in use) fails start-up rather than running without
// probes. With METRICS_ADDR empty nothing listens.
func (o *ops) Listen(ctx context.Context) error {
	if o.addr == "" {
		o.log.Info("METRICS_ADDR is empty: no /healthz, /readyz or /metrics listener")
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("METRICS_ADDR=%s: cannot listen for /healthz, /readyz and /metrics: %w", o.addr, err)
	}
	o.ln = ln
	return nil
}

// Serve serves the listener Listen bound until ctx is done (then it shuts
// down gracefully) or Close is called; without one it returns nil at once.
func (o *ops) Serve(ctx context.Context) error {
	if o.ln == nil {
		return nil
	}
	o.log.Info("serving /healthz, /readyz and /metrics", "addr", o.ln.Addr().String())
	return o.monitor.ServeListener(ctx, o.ln)
}

// Close stops the listener at once.
func (o *ops) Close() {
	if err := o.monitor.Close(); err != nil {
		o.log.Warn("closing the metrics listener", "error", err)
	}
}
