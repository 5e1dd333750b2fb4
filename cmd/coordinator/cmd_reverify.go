package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alert"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/rescore"
)

type pgxPool = pgxpool.Pool

// ReverifyCmd is "coordinator reverify --from T --to T [--rescore]".
type ReverifyCmd struct {
	From    string `placeholder:"T" help:"Re-verify the submissions of the batches whose window ends at or after T (RFC 3339, or \"YYYY-MM-DD HH:MM:SS\" UTC)."`
	To      string `placeholder:"T" help:"... and before T."`
	Rescore bool   `help:"Then re-score the range (as coordinator rescore)."`
	Format  string `default:"text" enum:"text,json" help:"Output format of the rescore report: text or json."`
}

// Help is the detail "coordinator reverify --help" shows.
func (ReverifyCmd) Help() string {
	return `Resets verified, validation_error, state_hash, parent, height and slot of the
submissions of every committed batch whose window end lies in [--from, --to),
then launches the verifier workers for those windows in the configured
WORKER_MODE (process or kubernetes), cut into MINI_BATCH_NUMBER mini-batches
and retried RETRY_COUNT times as the loop does. Scores do not change until the
range is re-scored: with --rescore, it is, right after. When the verifiers
leave more than MAX_UNVERIFIED_PERCENT of a window's submissions unverified,
reverify fails (exit 1) and does not re-score. With SUBMISSION_STORAGE=
CASSANDRA the columns are reset in Cassandra, where the verifiers work, and
the re-verified submissions are then copied into Postgres, where rescore
reads them. --to may not pass the end of the window the loop is working on.

Examples:

    coordinator reverify --from 2024-06-01T00:00:00Z --to 2024-06-02T00:00:00Z --rescore`
}

// Validate checks the range.
func (c *ReverifyCmd) Validate() error {
	_, _, err := rescore.Range(c.From, c.To)
	return err
}

// Run re-verifies (and re-scores) the range.
func (c *ReverifyCmd) Run(ctx context.Context, env *Env) error {
	from, to, err := rescore.Range(c.From, c.To)
	if err != nil {
		return usageError{err}
	}
	cfg, log, pool, err := openForRescore(ctx, env, "reverify")
	if err != nil {
		return err
	}
	defer pool.Close()
	launcher, err := newLauncher(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	if launcher == nil {
		return usageError{fmt.Errorf("reverify needs verifier workers: WORKER_MODE=none")}
	}
	var cs cassandraStore
	if cfg.Runtime.SubmissionStorage == config.StorageCassandra {
		if cs, err = openCassandra(ctx, cfg.Cassandra); err != nil {
			return err
		}
		defer cs.Close()
	}
	began := time.Now()
	failed := func(err error) error {
		log.Error("reverify failed: scores are unchanged, the range's submissions may be partly unverified; run reverify again", "from", from, "to", to, "error", err)
		sendOperationAlert(ctx, cfg, pool, log, alert.Operation{Command: "reverify", From: from, To: to, Err: err})
		return err
	}
	var windows []coordinator.Window
	var n int64
	if cs == nil {
		windows, n, err = postgres.ResetVerification(ctx, pool, from, to, cfg.Runtime.SurveyInterval)
	} else {
		windows, n, err = resetCassandra(ctx, cfg, pool, cs, from, to)
	}
	if err != nil {
		return failed(err)
	}
	log.Info("verification reset", "from", from, "to", to, "windows", len(windows), "submissions", n)
	if err := rescore.VerifyWindows(ctx, launcher, windows, rescore.VerifyOptions{MiniBatches: cfg.Runtime.MiniBatches,
		Retries: cfg.Runtime.RetryCount, Retry: coordinator.DefaultRetry, Logger: log}); err != nil {
		return failed(err)
	}
	if err := checkReverified(ctx, cfg, pool, cs, windows); err != nil {
		return failed(err)
	}
	log.Info("reverify finished", "from", from, "to", to, "windows", len(windows), "submissions", n, "seconds", time.Since(began).Seconds())
	done := alert.Operation{Command: "reverify", From: from, To: to, Windows: len(windows), Submissions: int(n)}
	if !c.Rescore {
		sendOperationAlert(ctx, cfg, pool, log, done)
		fmt.Fprintf(env.Stdout, "re-verified %d submissions in %d windows; scores are unchanged until the range is re-scored\n", n, len(windows))
		return nil
	}
	rep, err := runRescore(ctx, env, cfg, log, pool, from, to, false, c.Format)
	if rep == nil {
		// Re-verified, but not re-scored: the rescore's own failure.
		sendOperationAlert(ctx, cfg, pool, log, alert.Operation{Command: "rescore", From: from, To: to, Err: err})
		return err
	}
	o := rescore.Operation("reverify", rep)
	o.Windows, o.Submissions, o.Rescored = done.Windows, done.Submissions, true
	sendOperationAlert(ctx, cfg, pool, log, o)
	return err
}

// resetCassandra clears the verifier's columns of the range's submissions
// in Cassandra, where the verifiers read and write them (the loop copies
// them into Postgres when it scores; checkReverified copies them again).
func resetCassandra(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, cs cassandraStore, from, to time.Time) ([]coordinator.Window, int64, error) {
	windows, err := postgres.RescoreWindows(ctx, pool, from, to, cfg.Runtime.SurveyInterval)
	if err != nil {
		return nil, 0, err
	}
	var n int64
	for _, w := range windows {
		subs, err := cs.Submissions(ctx, w)
		if err != nil {
			return nil, 0, fmt.Errorf("reading the submissions of %s from Cassandra: %w", w.Start.Format(time.DateTime), err)
		}
		for i := range subs {
			subs[i].StateHash, subs[i].Parent, subs[i].Height, subs[i].Slot, subs[i].ValidationError, subs[i].Verified = nil, nil, nil, nil, nil, nil
		}
		if err := cs.UpdateVerification(ctx, subs); err != nil {
			return nil, 0, fmt.Errorf("resetting the verification of %s in Cassandra: %w", w.Start.Format(time.DateTime), err)
		}
		n += int64(len(subs))
	}
	return windows, n, nil
}

// checkReverified fails when the verifiers left more than
// MAX_UNVERIFIED_PERCENT of a window's submissions unverified, as the loop
// does, reading under the database step's deadline
// (POSTGRES_STATEMENT_TIMEOUT). With Cassandra the re-verified submissions
// are then copied into Postgres, where rescore reads them.
func checkReverified(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, cs cassandraStore, windows []coordinator.Window) error {
	step := func(f func(ctx context.Context) error) error {
		limit := cfg.Postgres.StatementTimeout
		sctx, cancel := context.WithCancel(ctx)
		if limit > 0 {
			sctx, cancel = context.WithTimeout(ctx, limit)
		}
		defer cancel()
		err := f(sctx)
		if err != nil && limit > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("timeout: no answer within POSTGRES_STATEMENT_TIMEOUT=%v: %w", limit, err)
		}
		return err
	}
	if cs == nil {
		var counts []postgres.Verification
		if err := step(func(ctx context.Context) (err error) {
			counts, err = postgres.VerificationCounts(ctx, pool, windows)
			return err
		}); err != nil {
			return err
		}
		return rescore.CheckVerified(counts, cfg.Workers.MaxUnverifiedPercent)
	}
	var all []coordinator.Submission
	counts := make([]postgres.Verification, len(windows))
	for i, w := range windows {
		subs, err := cs.Submissions(ctx, w)
		if err != nil {
			return fmt.Errorf("reading the re-verified submissions of %s from Cassandra: %w", w.Start.Format(time.DateTime), err)
		}
		counts[i] = rescore.Count(w, subs)
		all = append(all, subs...)
	}
	if err := rescore.CheckVerified(counts, cfg.Workers.MaxUnverifiedPercent); err != nil {
		return err
	}
	return step(func(ctx context.Context) error { return postgres.CopySubmissions(ctx, pool, all) })
}

// openForRescore loads the configuration, logs to stderr (stdout carries
// the report), opens the pool and checks that POSTGRES_USER may write what
// command writes (requireWriter); the caller closes the pool.
func openForRescore(ctx context.Context, env *Env, command string) (*config.Config, *slog.Logger, *pgxpool.Pool, error) {
	if err := config.LoadDotEnv(""); err != nil {
		return nil, nil, nil, err
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, nil, nil, err
	}
	log := slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: cfg.Log.Level}))
	pool, err := postgres.Open(ctx, cfg.Postgres.ConnString(""))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := requireWriter(ctx, cfg, pool, command); err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	return cfg, log, pool, nil
}

// requireWriter fails unless POSTGRES_USER may write what command writes:
// rescore and reverify need the coordinator's writer role (even a dry run
// holds the batch lock, which holds the loop off), never the read-only
// user.
func requireWriter(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, command string) error {
	missing, err := postgres.MissingRescorePrivileges(ctx, pool, command == "reverify")
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s needs the coordinator's writer role: POSTGRES_USER=%s may not %s (is it the read-only user?); run it with the coordinator's own POSTGRES_USER",
			command, cfg.Postgres.User, strings.Join(missing, ", "))
	}
	return nil
}
