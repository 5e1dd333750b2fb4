package main

import "context"

// VerifyCmd is "coordinator verify [START END]": the bundled verifier.
type VerifyCmd struct {
	Start string `arg:"" optional:"" help:"Start of the window, as the verifier contract writes it (\"2024-06-01 00:00:00.0+0000\"); default START_TIMESTAMP."`
	End   string `arg:"" optional:"" help:"End of the window; default END_TIMESTAMP."`
}

// Help is the detail "coordinator verify --help" shows.
func (VerifyCmd) Help() string {
	return `Verifies the submissions of one window: checks their shape, reads each named
block from BLOCKS_DIR (<block_hash>.json), and marks them verified or invalid with
the block's state hash, parent, height and slot. No SNARK verification (as the
original verifier's --no-checks). The submissions are read from
SUBMISSION_STORAGE (Postgres or Cassandra). Logs go to stderr; a one-line
summary goes to stdout. This is what process and Kubernetes workers run.

Examples:

    coordinator verify "2024-06-01 00:00:00.0+0000" "2024-06-01 00:20:00.0+0000"
    START_TIMESTAMP="2024-06-01 00:00:00.0+0000" END_TIMESTAMP="2024-06-01 00:20:00.0+0000" coordinator verify`
}

// Run verifies the window.
func (c *VerifyCmd) Run(ctx context.Context, env *Env) error {
	var args []string
	switch {
	case c.End != "":
		args = []string{c.Start, c.End}
	case c.Start != "":
		args = []string{c.Start}
	}
	return verify(ctx, args, env.Stdout)
}
