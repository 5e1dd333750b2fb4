// Command coordinator is the uptime validator coordinator of the delegation
// programme: it runs the survey loop (run), the bundled verifier (verify) and
// the database tasks.
//
// The command line is parsed by kong (github.com/alecthomas/kong): each
// command is a struct in a cmd_<name>.go file whose fields are its flags and
// arguments (struct tags give names, help and placeholders) and whose Run
// method does the work. To add a command, add a file with such a struct and
// one field in CLI below.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/internal/buildinfo"
)

// CLI is the command line: global flags and one field per command.
type CLI struct {
	Version versionFlag `help:"Print the version and exit."`

	Run            RunCmd            `cmd:"" help:"Run the survey loop: score batch after batch until stopped."`
	CreateDatabase CreateDatabaseCmd `cmd:"" help:"Create POSTGRES_DB if missing and apply the schema migrations."`
	InitDatabase   InitDatabaseCmd   `cmd:"" help:"Insert the starting bot_logs row: where the first batch begins."`
	DropDatabase   DropDatabaseCmd   `cmd:"" help:"Drop POSTGRES_DB."`
	CreateROUser   CreateROUserCmd   `cmd:"" name:"create-ro-user" help:"Create POSTGRES_RO_USER with read-only access."`
	Cleanup        CleanupCmd        `cmd:"" help:"Delete batches, points and submissions older than N days."`
	Verify         VerifyCmd         `cmd:"" help:"Run the bundled verifier on one window of submissions."`
	Serve          ServeCmd          `cmd:"" help:"Serve the read API, the batch stream and the web pages (read-only)."`
	Explain        ExplainCmd        `cmd:"" help:"Why a producer did or did not get a point, batch by batch."`
	Status         StatusCmd         `cmd:"" help:"The coordinator's progress, lag, last failure, lock holder and latest batches."`
	Rescore        RescoreCmd        `cmd:"" help:"Re-score committed batches from the submissions as they are now (--dry-run: who gains, who loses)."`
	Reverify       ReverifyCmd       `cmd:"" help:"Re-verify the submissions of committed batches with the verifier workers (--rescore: then re-score)."`
	VersionCmd     VersionCmd        `cmd:"" name:"version" help:"Print the version and exit."`
	Help           HelpCmd           `cmd:"" help:"Show help for a command."`
}

const description = `The uptime validator coordinator of the Mina delegation programme.

Configuration comes from environment variables and a .env file in the working
directory (see README.md and docs/configuration.md). Exit status: 0 success or
stopped by a signal, 1 operational error, 2 bad usage or configuration.`

// Env is what every command's Run method receives besides the context.
type Env struct {
	Stdout, Stderr io.Writer
}

// usageError is bad usage found after parsing (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitRequest carries kong's request to exit (after --help or --version)
// out of the parser without ending the process, so that Main can be tested.
type exitRequest int

// Main parses args, runs the command and returns the exit status: 0 success,
// 1 operational error, 2 bad usage or configuration.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	var cli CLI
	parser, err := newParser(&cli, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "coordinator:", err)
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			req, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = int(req)
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		return parseFailure(parser, err, stderr)
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	err = kctx.Run(&Env{Stdout: stdout, Stderr: stderr}, parser)
	if err == nil {
		return 0
	}
	var pe *kong.ParseError
	if errors.As(err, &pe) { // from "help <command>"
		return parseFailure(parser, err, stderr)
	}
	fmt.Fprintln(stderr, "coordinator:", err)
	var ue usageError
	var ce *config.Error
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return 2
	}
	return 1
}

func newParser(cli *CLI, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("coordinator"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitRequest(code)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		// "--batches -3" reads -3 as the value (then refused by validation),
		// not as a short flag.
		kong.WithHyphenPrefixedParameters(true),
	)
}

// parseFailure reports bad usage: the error, the usage line of the command
// concerned and where to get help, on stderr; exit status 2.
func parseFailure(parser *kong.Kong, err error, stderr io.Writer) int {
	fmt.Fprintln(stderr, "coordinator: error:", err)
	var pe *kong.ParseError
	if !errors.As(err, &pe) || pe.Context == nil || pe.Context.Selected() == nil {
		fmt.Fprintln(stderr, "Usage: coordinator <command> [flags]")
		fmt.Fprintln(stderr, `Run "coordinator --help" for the commands.`)
	} else {
		out := parser.Stdout
		parser.Stdout = stderr
		_ = pe.Context.PrintUsage(true)
		parser.Stdout = out
	}
	return 2
}

// versionFlag is --version.
type versionFlag bool

func (versionFlag) BeforeReset(k *kong.Kong) error {
	fmt.Fprint(k.Stdout, buildinfo.Get().String())
	k.Exit(0)
	return nil
}

// VersionCmd is "coordinator version".
type VersionCmd struct{}

// Run prints the build information.
func (VersionCmd) Run(env *Env) error {
	_, err := fmt.Fprint(env.Stdout, buildinfo.Get().String())
	return err
}
