// Command magetasks does the work of the mage targets (magefiles/): the
// database tasks and the demo. The magefile builds it and runs it as a
// subprocess, so that mage itself compiles only the standard library and
// starts printing at once; this command, which imports the database code, the
// synthetic network and the configuration, is compiled by "go build" with
// visible progress. Its parameters come from the environment through the
// config package (POSTGRES_*, BATCH_END_EPOCH, MINS_AGO, OVERRIDE_EMPTY,
// PRODUCERS, HOURS, SEED, KEEP), like every other command of the module.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

// CLI is the command line the magefile uses.
type CLI struct {
	CreateDatabase struct{} `cmd:"" help:"Create POSTGRES_DB if missing and apply the schema migrations."`
	InitDatabase   struct{} `cmd:"" help:"Insert the starting bot_logs row (BATCH_END_EPOCH, MINS_AGO, OVERRIDE_EMPTY)."`
	DropDatabase   struct{} `cmd:"" help:"Drop POSTGRES_DB."`
	CreateROUser   struct{} `cmd:"" name:"create-ro-user" help:"Create POSTGRES_RO_USER with read-only access."`
	Cleanup        struct {
		Days int `arg:"" help:"Delete data older than this many days."`
	} `cmd:"" help:"Delete data older than N days."`
	Demo DemoCmd `cmd:"" help:"Run the demo (PRODUCERS, HOURS, SEED, KEEP)."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var cli CLI
	parser, err := kong.New(&cli, kong.Name("magetasks"), kong.Description("The mage targets' work; run through go tool mage."))
	if err != nil {
		return err
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		return err
	}
	if kctx.Command() == "demo" {
		return cli.Demo.Run(ctx)
	}
	if kctx.Command() == "cleanup <days>" && cli.Cleanup.Days < 1 {
		return fmt.Errorf("cleanup: days must be >= 1, got %d", cli.Cleanup.Days)
	}
	pg, err := tasks.Postgres() // loads .env too
	if err != nil {
		return err
	}
	switch kctx.Command() {
	case "create-database":
		return tasks.CreateDatabase(ctx, pg, os.Stdout)
	case "init-database":
		t, err := config.LoadTasks(config.Environment)
		if err != nil {
			return err
		}
		return tasks.InitDatabase(ctx, pg, t.BatchEndEpoch, t.MinsAgo, t.OverrideEmpty, os.Stdout)
	case "drop-database":
		return tasks.DropDatabase(ctx, pg, os.Stdout)
	case "create-ro-user":
		return tasks.CreateROUser(ctx, pg, os.Stdout)
	case "cleanup <days>":
		return tasks.Cleanup(ctx, pg, cli.Cleanup.Days, os.Stdout)
	}
	return fmt.Errorf("unknown command %q", kctx.Command())
}

// clock prints steps to out with the seconds elapsed since began.
type clock struct {
	began time.Time
	out   io.Writer
}

func (c clock) step(format string, args ...any) {
	fmt.Fprintf(c.out, "[%5.1fs] %s\n", time.Since(c.began).Seconds(), fmt.Sprintf(format, args...))
}
