package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cli runs the command line in process, as main does, with an empty
// environment (no POSTGRES_*: commands that got past parsing fail on
// configuration with status 2).
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(t.TempDir()) // no stray .env
	for _, name := range []string{"POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PORT", "POSTGRES_PASSWORD"} {
		t.Setenv(name, "")
	}
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	commands := []string{"run", "create-database", "init-database", "drop-database", "create-ro-user", "cleanup", "verify", "version", "help"}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errOut := cli(t, args...)
		if code != 0 || errOut != "" {
			t.Errorf("coordinator %s: exit %d, stderr %q; want 0 and nothing", args, code, errOut)
		}
		if !strings.HasPrefix(out, "Usage: coordinator <command> [flags]\n") {
			t.Errorf("coordinator %s: help starts %q", args, firstLine(out))
		}
		for _, c := range commands {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c) + ` +\S`).MatchString(out) {
				t.Errorf("coordinator %s: command %s not listed with its summary:\n%s", args, c, out)
			}
		}
		if !strings.Contains(out, "--version") {
			t.Errorf("coordinator %s: --version not shown", args)
		}
	}

	// Each command's help: usage line, flags in --flag style, examples; the
	// same text from "<cmd> --help", "help <cmd>" and "<cmd> -h".
	for cmd, want := range map[string][]string{
		"run":             {"Usage: coordinator run [flags]", "--batches=N", "Examples:", "coordinator run --batches 3"},
		"init-database":   {"Usage: coordinator init-database [flags]", "--batch-end-epoch=TIME", "--mins-ago=N", "--override-empty", "Examples:", "2024-06-05T00:00:00Z"},
		"cleanup":         {"Usage: coordinator cleanup --days=N [flags]", "Example:", "coordinator cleanup --days 180"},
		"verify":          {"Usage: coordinator verify [<start> [<end>]] [flags]", "START_TIMESTAMP", "Examples:"},
		"create-database": {"Usage: coordinator create-database [flags]", "Example:"},
		"drop-database":   {"Usage: coordinator drop-database [flags]", "Example:"},
		"create-ro-user":  {"Usage: coordinator create-ro-user [flags]", "POSTGRES_RO_PASSWORD", "Example:"},
		"version":         {"Usage: coordinator version [flags]"},
	} {
		var first string
		for i, args := range [][]string{{cmd, "--help"}, {"help", cmd}, {cmd, "-h"}} {
			code, out, errOut := cli(t, args...)
			if code != 0 || errOut != "" {
				t.Errorf("coordinator %s: exit %d, stderr %q; want 0 and nothing", args, code, errOut)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("coordinator %s: help lacks %q:\n%s", args, w, out)
				}
			}
			if i == 0 {
				first = out
			} else if out != first {
				t.Errorf("coordinator %s differs from coordinator %s --help:\n%s\nvs\n%s", args, cmd, out, first)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		message   string // the error line
		usageLine string
	}{
		{nil, `coordinator: error: expected one of "run"`, "Usage: coordinator <command> [flags]"},
		{[]string{"bogus"}, "coordinator: error: unexpected argument bogus", "Usage: coordinator <command> [flags]"},
		{[]string{"help", "bogus"}, "coordinator: error: unexpected argument bogus", "Usage: coordinator <command> [flags]"},
		{[]string{"-batches", "3"}, "coordinator: error: unknown flag -b", "Usage: coordinator <command> [flags]"},
		{[]string{"run", "--batches", "-3"}, "coordinator: error: run: --batches must be >= 0, got -3", "Usage: coordinator run [flags]"},
		{[]string{"run", "--batches=-3"}, "coordinator: error: run: --batches must be >= 0, got -3", "Usage: coordinator run [flags]"},
		{[]string{"run", "--batches", "three"}, `coordinator: error: --batches: expected a valid 64 bit int but got "three"`, "Usage: coordinator run [flags]"},
		{[]string{"run", "extra"}, "coordinator: error: unexpected argument extra", "Usage: coordinator run [flags]"},
		{[]string{"run", "--bogus"}, "coordinator: error: unknown flag --bogus", "Usage: coordinator run [flags]"},
		{[]string{"cleanup"}, "coordinator: error: cleanup: --days N is required (N >= 1)", "Usage: coordinator cleanup --days=N [flags]"},
		{[]string{"cleanup", "--days", "0"}, "coordinator: error: cleanup: --days N is required (N >= 1)", "Usage: coordinator cleanup --days=N [flags]"},
		{[]string{"cleanup", "--days", "-2"}, "coordinator: error: cleanup: --days must be >= 1, got -2", "Usage: coordinator cleanup --days=N [flags]"},
		{[]string{"init-database", "--mins-ago", "5", "--batch-end-epoch", "1717545600"},
			"coordinator: error: init-database: --batch-end-epoch and --mins-ago exclude each other; give one", "Usage: coordinator init-database [flags]"},
		{[]string{"init-database", "--mins-ago", "-5"}, "coordinator: error: init-database: --mins-ago: minutes ago must be >= 0, got -5", "Usage: coordinator init-database [flags]"},
		{[]string{"init-database", "--batch-end-epoch", "1717545600000"},
			"coordinator: error: init-database: --batch-end-epoch: batch end 1717545600000: after year 9999; it looks like milliseconds, the epoch is in seconds (1717545600)",
			"Usage: coordinator init-database [flags]"},
		{[]string{"init-database", "--batch-end-epoch", "253402300800"},
			"coordinator: error: init-database: --batch-end-epoch: batch end 253402300800: after year 9999; expected unix seconds", "Usage: coordinator init-database [flags]"},
		{[]string{"init-database", "--batch-end-epoch", "yesterday"},
			`coordinator: error: init-database: --batch-end-epoch: batch end "yesterday": expected unix seconds or a date and time`, "Usage: coordinator init-database [flags]"},
		{[]string{"verify", "a", "b", "c"}, "coordinator: error: unexpected argument c", "Usage: coordinator verify [<start> [<end>]] [flags]"},
	} {
		code, out, errOut := cli(t, tc.args...)
		if code != 2 {
			t.Errorf("coordinator %q: exit %d, want 2", tc.args, code)
		}
		if out != "" {
			t.Errorf("coordinator %q: stdout %q, want nothing", tc.args, out)
		}
		lines := strings.Split(errOut, "\n")
		if !strings.HasPrefix(lines[0], tc.message) {
			t.Errorf("coordinator %q: first line %q, want it to start with %q", tc.args, lines[0], tc.message)
		}
		if len(lines) < 2 || lines[1] != tc.usageLine {
			t.Errorf("coordinator %q: stderr %q, want the usage line %q second", tc.args, errOut, tc.usageLine)
		}
	}
}

// TestValidUsageReachesConfiguration: accepted arguments get past the
// parser to the configuration, which fails (status 2) on the empty
// environment by naming the variables.
func TestValidUsageReachesConfiguration(t *testing.T) {
	for _, args := range [][]string{
		{"run"},
		{"run", "--batches", "3"},
		{"run", "--batches=0"},
		{"create-database"},
		{"drop-database"},
		{"create-ro-user"},
		{"cleanup", "--days", "180"},
		{"cleanup", "--days=7"},
		{"init-database"},
		{"init-database", "--mins-ago", "20"},
		{"init-database", "--mins-ago", "0", "--override-empty"},
		{"init-database", "--batch-end-epoch", "1717545600"},
		{"init-database", "--batch-end-epoch", "2024-06-05 00:00:00"},
		{"init-database", "--batch-end-epoch", "2024-06-05T00:00:00Z"},
		{"init-database", "--batch-end-epoch=2024-06-05T02:00:00+02:00"},
	} {
		code, out, errOut := cli(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "POSTGRES_HOST: missing") {
			t.Errorf("coordinator %q: exit %d, stdout %q, stderr %q; want 2 and the configuration problems", args, code, out, errOut)
		}
		if strings.Contains(errOut, "Usage:") {
			t.Errorf("coordinator %q: a configuration error printed the usage:\n%s", args, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"run", "--version"}} {
		code, out, errOut := cli(t, args...)
		if code != 0 || errOut != "" || !regexp.MustCompile(`^coordinator \S+\n`).MatchString(out) || !strings.Contains(out, "\ngo          go1.") {
			t.Errorf("coordinator %q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestBinaryExitStatus checks the real process: status and streams.
func TestBinaryExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // prefix
		stderr string // prefix
	}{
		{[]string{"--help"}, 0, "Usage: coordinator <command> [flags]", ""},
		{[]string{"help", "run"}, 0, "Usage: coordinator run [flags]", ""},
		{[]string{"version"}, 0, "coordinator ", ""},
		{[]string{"run", "--batches", "-3"}, 2, "", "coordinator: error: run: --batches must be >= 0, got -3\nUsage: coordinator run [flags]"},
		{[]string{"cleanup", "--days", "3"}, 2, "", "coordinator: invalid configuration:\n  POSTGRES_HOST: missing"},
	} {
		cmd := exec.Command(binary, tc.args...)
		cmd.Dir = t.TempDir()
		cmd.Env = []string{}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if exitCode(err) != tc.code || !strings.HasPrefix(out.String(), tc.stdout) || !strings.HasPrefix(errOut.String(), tc.stderr) {
			t.Errorf("coordinator %q: exit %d, stdout %q, stderr %q; want %d, %q..., %q...",
				tc.args, exitCode(err), firstLine(out.String()), errOut.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestNoKubernetesBuild: -tags "nokubernetes nocassandra" (the demo's
// build) leaves client-go, gocql and the AWS SDK out (a much smaller binary
// for process mode on PostgreSQL) and refuses WORKER_MODE=kubernetes and
// SUBMISSION_STORAGE=CASSANDRA clearly.
func TestNoKubernetesBuild(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "coordinator-small")
	if out, err := exec.Command("go", "build", "-tags", "nokubernetes nocassandra", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nokubernetes nocassandra: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, module := range []string{"k8s.io/client-go", "github.com/gocql/gocql", "github.com/aws/aws-sdk-go", "github.com/chromedp/chromedp"} {
		if strings.Contains(string(out), module) {
			t.Errorf("the small build links %s", module)
		}
	}
	// The default build neither: the browser driver is for the web pages' tests.
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil || strings.Contains(string(deps), "chromedp") {
		t.Errorf("the default build depends on chromedp (%v)", err)
	}
	cfg := seeded(t)
	cmd := coordinatorCmd(cfg, []string{"WORKER_MODE=kubernetes", "WORKER_IMAGE=v", "WORKER_TAG=1", "AUTH_VOLUME_MOUNT_PATH=/auth"}, "run", "--batches", "1")
	cmd.Path = bin
	out, err = cmd.CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "this binary was built with -tags nokubernetes") {
		t.Errorf("WORKER_MODE=kubernetes on the nokubernetes build: exit %d\n%s", exitCode(err), out)
	}
	cmd = coordinatorCmd(cfg, []string{"SUBMISSION_STORAGE=CASSANDRA", "AWS_KEYSPACE=k", "CASSANDRA_HOST=127.0.0.1", "CASSANDRA_PORT=9042",
		"CASSANDRA_USERNAME=u", "CASSANDRA_PASSWORD=p", "BLOCKS_DIR=" + t.TempDir()}, "verify", "2024-06-05T00:00:00Z", "2024-06-05T00:20:00Z")
	cmd.Path = bin
	out, err = cmd.CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "this binary was built with -tags nocassandra") {
		t.Errorf("SUBMISSION_STORAGE=CASSANDRA on the nocassandra build: exit %d\n%s", exitCode(err), out)
	}
}
