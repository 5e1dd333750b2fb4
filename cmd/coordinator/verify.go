package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/logging"
	"github.com/delegation-program/uptime-coordinator/workers"
	"github.com/delegation-program/uptime-coordinator/workers/verifier"
)

// verify is the bundled verifier (package workers/verifier) for one window:
// "coordinator verify START END", or START_TIMESTAMP and END_TIMESTAMP from
// the environment when no arguments are given. It logs to stderr and prints
// a one-line summary to stdout.
func verify(ctx context.Context, args []string, stdout io.Writer) error {
	if err := config.LoadDotEnv(""); err != nil {
		return err
	}
	w, err := verifyWindow(args, config.Environment)
	if err != nil {
		return usageError{fmt.Errorf("verify: %w", err)}
	}
	cfg, err := config.LoadVerifier(config.Environment)
	if err != nil {
		return err
	}

	log := logging.New(os.Stderr, cfg.Log)
	log.Info("bundled verifier: shapes and blocks only, no SNARK verification (as --no-checks)",
		"start", workers.FormatTimestamp(w.Start), "end", workers.FormatTimestamp(w.End), "blocks_dir", cfg.BlocksDir)
	var store verifier.Store
	if cfg.SubmissionStorage == config.StorageCassandra {
		c, err := openCassandra(ctx, cfg.Cassandra)
		if err != nil {
			return err
		}
		defer c.Close()
		store = verifier.Filter(c)
	} else {
		pool, err := postgres.Open(ctx, cfg.Postgres.ConnString(""))
		if err != nil {
			return err
		}
		defer pool.Close()
		store = &postgres.Database{Pool: pool}
	}
	v := &verifier.Verifier{Store: store, BlocksDir: cfg.BlocksDir, MaxBlockBytes: cfg.MaxBlockBytes, Logger: log}
	res, err := v.Verify(ctx, w)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	_, err = fmt.Fprintln(stdout, res)
	return err
}

// verifyWindow reads the window from the two arguments, or from
// START_TIMESTAMP and END_TIMESTAMP when there are none.
func verifyWindow(args []string, lookup func(string) (string, bool)) (coordinator.Window, error) {
	var start, end string
	switch len(args) {
	case 2:
		start, end = args[0], args[1]
	case 0:
		var ok1, ok2 bool
		start, ok1 = lookup("START_TIMESTAMP")
		end, ok2 = lookup("END_TIMESTAMP")
		if !ok1 || !ok2 {
			return coordinator.Window{}, errors.New("want START END, or START_TIMESTAMP and END_TIMESTAMP in the environment")
		}
	default:
		return coordinator.Window{}, fmt.Errorf("want START END, got %d arguments", len(args))
	}
	var w coordinator.Window
	var err error
	if w.Start, err = workers.ParseTimestamp(start); err != nil {
		return w, fmt.Errorf("START: %w", err)
	}
	if w.End, err = workers.ParseTimestamp(end); err != nil {
		return w, fmt.Errorf("END: %w", err)
	}
	if !w.Start.Before(w.End) {
		return w, fmt.Errorf("START %s is not before END %s", start, end)
	}
	return w, nil
}
