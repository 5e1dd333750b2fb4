// Command coordinator is the uptime validator coordinator of the delegation
// programme: it runs the survey loop (run) and the database tasks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

const usage = `Usage: coordinator <command> [flags]

Commands:
  run [--batches N]        run the survey loop (N > 0: process N batches and exit)
  create-database          create POSTGRES_DB if missing and apply the schema migrations
  init-database [--batch-end-epoch VALUE | --mins-ago N] [--override-empty]
                           insert the starting bot_logs row (VALUE: unix seconds or
                           "YYYY-MM-DD HH:MM:SS" UTC; default now)
  drop-database            drop POSTGRES_DB
  create-ro-user           create POSTGRES_RO_USER with read-only access
  cleanup --days N         delete data older than N days (cleanup_old_data)
  verify START END         the bundled verifier for one window (see README)

Configuration comes from the environment and a .env file; see README.md.
`

// exitCode of a failure: 1 for an operational error, 2 for bad usage or
// configuration.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "coordinator:", err)
	var ue usageError
	var ce *config.Error
	if errors.As(err, &ue) || errors.As(err, &ce) {
		os.Exit(2)
	}
	os.Exit(1)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch cmd {
	case "run":
		batches := fs.Int("batches", 0, "process exactly this many batches, then exit (0: run until stopped)")
		if err := parse(fs, args); err != nil {
			return err
		}
		return run(ctx, *batches, stdout)
	case "create-database", "drop-database", "create-ro-user":
		if err := parse(fs, args); err != nil {
			return err
		}
		cfg, err := tasks.Postgres()
		if err != nil {
			return err
		}
		switch cmd {
		case "create-database":
			return tasks.CreateDatabase(ctx, cfg, stdout)
		case "drop-database":
			return tasks.DropDatabase(ctx, cfg, stdout)
		default:
			return tasks.CreateROUser(ctx, cfg, stdout)
		}
	case "init-database":
		epoch := fs.String("batch-end-epoch", "", `start time: unix seconds or "YYYY-MM-DD HH:MM:SS" (UTC); default now`)
		minsAgo := fs.Int("mins-ago", -1, "start this many minutes ago (instead of --batch-end-epoch)")
		override := fs.Bool("override-empty", false, "insert even when bot_logs is not empty")
		if err := parse(fs, args); err != nil {
			return err
		}
		var mins *int
		if *minsAgo >= 0 {
			mins = minsAgo
		}
		cfg, err := tasks.Postgres()
		if err != nil {
			return err
		}
		return tasks.InitDatabase(ctx, cfg, *epoch, mins, *override, stdout)
	case "cleanup":
		days := fs.Int("days", 0, "delete data older than this many days (required)")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *days < 1 {
			return usageError{errors.New("cleanup: --days N is required, N >= 1")}
		}
		cfg, err := tasks.Postgres()
		if err != nil {
			return err
		}
		return tasks.Cleanup(ctx, cfg, *days, stdout)
	case "verify":
		if err := parse(fs, args); err != nil {
			return err
		}
		return verify(ctx, fs.Args(), stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.Name() != "verify" && fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected arguments %s", fs.Name(), strings.Join(fs.Args(), " "))}
	}
	return nil
}
