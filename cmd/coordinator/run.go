package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/buildinfo"
	"github.com/delegation-program/uptime-coordinator/internal/logging"
	"github.com/delegation-program/uptime-coordinator/workers"
	"github.com/delegation-program/uptime-coordinator/workers/process"
	"github.com/delegation-program/uptime-coordinator/workers/verifier"
)

func run(ctx context.Context, batches int, stdout io.Writer) error {
	if err := config.LoadDotEnv(""); err != nil {
		return err
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	secrets := config.SecretMasker(cfg.Secrets())
	log := logging.NewMasked(stdout, cfg.Log, secrets)
	slog.SetDefault(log)
	log.Info("coordinator starting", "version", buildinfo.Get().Short(), "config", cfg)

	pool, err := postgres.Open(ctx, cfg.Postgres.ConnString(""), postgres.WithStatementTimeout(cfg.Postgres.StatementTimeout))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrateOnStart(ctx, cfg, pool, log); err != nil {
		return err
	}
	lock, err := postgres.Acquire(ctx, pool, 15*time.Second)
	if err != nil {
		return err
	}
	defer lock.Release()
	cp := checkpoint() // nil but in the crash tests' build
	db := &postgres.Database{Pool: pool, Lock: lock, Checkpoint: cp, Logger: log}
	bulk, why, err := postgres.CanBulkWritePoints(ctx, pool)
	if err != nil {
		return err
	}
	db.BulkPoints = bulk
	if bulk {
		log.Info("points are written with the bulk path (COPY without per-row trigger and foreign-key overhead)")
	} else {
		log.Info("points are written row-checked (slower at large batches)", "reason", why)
	}

	source, closeSource, err := newSource(ctx, cfg, db)
	if err != nil {
		return err
	}
	defer closeSource()
	ops, err := setupOps(ctx, cfg, pool, log)
	if err != nil {
		return err
	}
	defer ops.Close()
	launcher, err := newLauncher(ctx, cfg, log, ops.Workers())
	if err != nil {
		return err
	}

	eng := &coordinator.Engine{
		Ledger: db, Source: source, Launcher: launcher,
		Interval: cfg.Runtime.SurveyInterval, MiniBatches: cfg.Runtime.MiniBatches, UptimeDays: cfg.Runtime.UptimeDays,
		Retries: cfg.Runtime.RetryCount, CatchUpAfter: cfg.Runtime.CatchUpAfter, CatchUpChunk: cfg.Runtime.CatchUpChunk, MaxUnverifiedPercent: cfg.Workers.MaxUnverifiedPercent, CopySubmissions: cfg.Runtime.SubmissionStorage == config.StorageCassandra,
		Grace: 2 * time.Minute, Retry: coordinator.DefaultRetry,
		DBTimeout: cfg.Postgres.StatementTimeout, VerifyLimit: cfg.Workers.Timeout,
		Logger: log, Checkpoint: cp,
		// Recorded for coordinator status; a failure to record is logged and
		// never stops the loop. Bounded like a batch step (and by 10 s): the
		// retry, and its log line, wait for it, so against a frozen server
		// it must not outlast the step that failed.
		OnFailure: func(ctx context.Context, f coordinator.Failure) {
			limit := 10 * time.Second
			if d := cfg.Postgres.StatementTimeout; d > 0 {
				limit = min(limit, d)
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
			defer cancel()
			if err := db.RecordFailure(ctx, time.Now(), f); err != nil {
				log.Error("could not record the failed batch attempt", "error", err)
			}
		},
	}
	ops.Apply(eng)
	al, err := setupAlerts(ctx, cfg, pool, log, ops.monitor.Registry())
	if err != nil {
		return err
	}
	defer al.Stop()
	al.Apply(db, eng)
	if err := ops.Listen(ctx); err != nil {
		return err
	}
	go func() {
		// Scoring goes on without the listener; its probes will say so.
		if err := ops.Serve(ctx); err != nil {
			log.Error("the /healthz, /readyz and /metrics listener stopped", "error", err)
		}
	}()

	err = runLocked(ctx, eng, lock, batches, log)
	if coordinator.IsShutdown(err) {
		log.Info("coordinator stopped by signal; an uncommitted batch was rolled back")
		return nil
	}
	// Deliver what is due before exiting: the abandoned-batch alert, or
	// the alerts of a bounded run.
	al.Drain(ctx)
	if err != nil {
		return err
	}
	log.Info("coordinator finished", "batches", batches)
	return nil
}

// Lock monitoring: the lock connection is checked every lockCheckInterval;
// one that does not answer within lockCheckTimeout counts as lost. After a
// loss the lock is sought again for up to lockPatience (a restarting
// server).
const (
	lockCheckInterval = time.Second
	lockCheckTimeout  = 5 * time.Second
	lockPatience      = 2 * time.Minute
)

// runLocked runs the engine while the coordinator's advisory lock is held.
// When the lock connection is lost, scoring stops at once (the batch in
// progress is abandoned, uncommitted) and the lock is taken again; when
// another coordinator holds it by then, runLocked fails with a message
// saying so (exit 1).
func runLocked(ctx context.Context, eng *coordinator.Engine, lock *postgres.HeldLock, batches int, log *slog.Logger) error {
	done := 0
	after := eng.AfterBatch
	eng.AfterBatch = func(ctx context.Context, s *coordinator.Summary) {
		done++
		if after != nil {
			after(ctx, s)
		}
	}
	for {
		rctx, cancel := context.WithCancel(ctx)
		go lock.Watch(rctx, lockCheckInterval, lockCheckTimeout, log)
		lost := lock.Lost()
		go func() {
			select {
			case <-lost:
				cancel()
			case <-rctx.Done():
			}
		}()
		remaining := 0
		if batches > 0 {
			if remaining = batches - done; remaining <= 0 {
				return nil
			}
		}
		err := eng.Run(rctx, remaining)
		cancel()
		select {
		case <-lost:
		default:
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Error("scoring stopped: the coordinator's advisory lock was lost (connection to PostgreSQL lost); the batch in progress was not committed; taking the lock again")
		if err := lock.Reacquire(ctx, lockPatience, log); err != nil {
			if errors.Is(err, postgres.ErrLocked) {
				return errors.New("the coordinator's advisory lock was lost and another coordinator holds it now: exiting so that only one coordinator scores this database")
			}
			return fmt.Errorf("the coordinator's advisory lock was lost and could not be taken again: %w", err)
		}
		log.Warn("the coordinator's advisory lock is held again; scoring resumes")
	}
}

// migrateOnStart applies pending migrations when MIGRATE_ON_START is true;
// otherwise it refuses to start while any is pending.
func migrateOnStart(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger) error {
	if !cfg.Postgres.MigrateOnStart {
		pending, err := postgres.PendingMigrations(ctx, pool)
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			return fmt.Errorf("schema migrations %v are pending and MIGRATE_ON_START is false: run `coordinator create-database` (it applies them) before `coordinator run`, or set MIGRATE_ON_START=true", pending)
		}
		return nil
	}
	res, err := postgres.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(res.Applied) > 0 {
		log.Info("schema migrated", "applied", res.Applied, "version", res.Current)
	}
	return nil
}

// cassandraStore is the submissions table in Cassandra or AWS Keyspaces, as
// "coordinator run" reads it and the bundled verifier updates it
// (openCassandra: cassandra.go, or cassandra_off.go with -tags nocassandra).
type cassandraStore interface {
	verifier.FullStore
	Close()
}

func newSource(ctx context.Context, cfg *config.Config, db *postgres.Database) (coordinator.SubmissionSource, func(), error) {
	switch cfg.Runtime.SubmissionStorage {
	case config.StorageCassandra:
		cs, err := openCassandra(ctx, cfg.Cassandra)
		if err != nil {
			return nil, nil, err
		}
		return cs, cs.Close, nil
	default:
		return db, func() {}, nil
	}
}

func newLauncher(ctx context.Context, cfg *config.Config, log *slog.Logger, events workers.Events) (coordinator.Launcher, error) {
	switch cfg.Workers.Mode {
	case workers.ModeNone:
		log.Info("WORKER_MODE=none: submissions are verified by something else; the coordinator only scores")
		return nil, nil
	case workers.ModeKubernetes:
		return newKubernetesLauncher(ctx, cfg, log, events)
	case workers.ModeProcess:
		log.Info("verifiers run as local processes")
		// What a verifier starts is reparented to the coordinator, so that
		// it is ended and reaped with the verifier's process group.
		if err := process.BecomeSubreaper(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			log.Warn("the coordinator cannot be the subreaper of its verifiers: what they leave running is ended only by the next coordinator", "error", err)
		}
		l := process.New(cfg.WorkerOptions(), log)
		l.Events = events
		return l, nil
	default:
		return nil, fmt.Errorf("WORKER_MODE=%s is not supported by this build", cfg.Workers.Mode)
	}
}
