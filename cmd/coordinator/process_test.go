package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// TestProcessWorkersScoreAsPreverified runs the real binary in process mode
// with the bundled verifier ("coordinator verify") as the worker command,
// over unverified submissions and a directory of block files. Every
// submission must come out verified as the generator says, and the scores
// must equal those of a run over the same submissions inserted already
// verified (WORKER_MODE=none).
func TestProcessWorkersScoreAsPreverified(t *testing.T) {
	t.Parallel()
	const n = 3
	ctx := context.Background()
	net := synthnet.Generate(synthnet.Params{Seed: 23, Producers: 120, Start: netStart, Duration: n * 20 * time.Minute})
	blocks := filepath.Join(t.TempDir(), "blocks")
	if err := synthnet.WriteBlockFiles(blocks, net.Blocks); err != nil {
		t.Fatal(err)
	}
	verified := setup(t, net.Unverified()).cfg
	cmd := coordinatorCmd(verified, []string{"WORKER_MODE=process", "WORKER_COMMAND=" + shellquote.Join(binary, "verify"),
		"BLOCKS_DIR=" + blocks, "MINI_BATCH_NUMBER=5", "WORKER_TIMEOUT=2m"}, "run", "--batches", "3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("coordinator run in process mode: %v\n%s", err, out)
	}
	if c := strings.Count(string(out), `"msg":"verifier launched"`); c != n*5 {
		t.Errorf("%d verifiers launched, want %d", c, n*5)
	}
	if c := strings.Count(string(out), "unverified submissions: "); c != n*5 {
		t.Errorf("%d verifier summaries logged, want %d:\n%s", c, n*5, out)
	}
	// The verifiers' own log records join the coordinator's log as records
	// (with the worker's attributes), not as lines of text.
	relayed := 0
	for _, line := range strings.Split(string(out), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if l, ok := rec["line"].(string); ok && (strings.HasPrefix(l, "{") || strings.HasPrefix(l, "time=")) {
			t.Errorf("a verifier's log record logged as a line of text: %s", line)
		}
		if rec["msg"] == "bundled verifier: shapes and blocks only, no SNARK verification (as --no-checks)" &&
			rec["level"] == "INFO" && rec["stream"] == "stderr" && rec["worker"] != nil && rec["mini_batch"] != nil && rec["blocks_dir"] == blocks {
			relayed++
		}
	}
	if relayed != n*5 {
		t.Errorf("%d verifier records relayed with their worker, want %d", relayed, n*5)
	}

	// Every submission verified, true or false as the generator says.
	pool := pgtest.Pool(t, verified)
	rows, err := pool.Query(ctx, `SELECT submitter, submitted_at, verified, coalesce(validation_error, '') FROM submissions`)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		submitter string
		at        time.Time
	}
	got := map[key]*bool{}
	reasons := map[key]string{}
	for rows.Next() {
		var k key
		var v *bool
		var reason string
		if err := rows.Scan(&k.submitter, &k.at, &v, &reason); err != nil {
			t.Fatal(err)
		}
		got[k], reasons[k] = v, reason
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(net.Submissions) {
		t.Fatalf("%d submissions in the database, want %d", len(got), len(net.Submissions))
	}
	invalid := 0
	for _, s := range net.Submissions {
		k := key{s.Submitter, s.SubmittedAt.UTC()}
		v, ok := got[k]
		switch {
		case !ok:
			t.Fatalf("submission of %s at %v is missing", k.submitter, k.at)
		case v == nil:
			t.Errorf("submission of %s at %v was not verified", k.submitter, k.at)
		case *v != (s.Invalid == ""):
			t.Errorf("submission of %s at %v: verified %v (%s), want %v", k.submitter, k.at, *v, reasons[k], s.Invalid == "")
		}
		if s.Invalid != "" {
			invalid++
		}
	}
	if invalid == 0 {
		t.Error("the network has no invalid submissions: the test proves less than it should")
	}
	var points int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM points`).Scan(&points); err != nil {
		t.Fatal(err)
	}
	if points == 0 {
		t.Fatal("no points written")
	}

	// The same scores as over pre-verified submissions.
	preverified := setup(t, net.Verified()).cfg
	runCoordinator(t, preverified, "run", "--batches", "3")
	want := pgtest.TakeSnapshot(t, pgtest.Pool(t, preverified))
	have := pgtest.TakeSnapshot(t, pool)
	for _, table := range []string{"nodes", "points", "bot_logs_statehash", "bot_logs", "statehash", "points_summary", "score_history"} {
		if d := (pgtest.Snapshot{table: want[table]}).Diff(pgtest.Snapshot{table: have[table]}); d != "" {
			t.Errorf("%s differs between the process-mode run and the pre-verified run:\n%s", table, d)
		}
	}
	if len(have["points"]) != points || len(have["nodes"]) == 0 {
		t.Errorf("snapshot has %d points and %d nodes", len(have["points"]), len(have["nodes"]))
	}
}

func verifyCmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"verify"}, args...)...)
	cmd.Dir = os.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	return cmd
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestVerifyCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	net := synthnet.Generate(synthnet.Params{Seed: 3, Producers: 30, Start: netStart, Duration: 20 * time.Minute})
	if _, err := pgtest.InsertSubmissions(ctx, pgtest.Pool(t, cfg), net.Unverified()); err != nil {
		t.Fatal(err)
	}
	blocks := t.TempDir()
	if err := synthnet.WriteBlockFiles(blocks, net.Blocks); err != nil {
		t.Fatal(err)
	}
	env := append(pgtest.Env(cfg), "BLOCKS_DIR="+blocks)

	// Bad usage and configuration exit 2 with a clear message.
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{env, []string{"2024-06-01 00:00:00.0+0000"}, "want START END, got 1 arguments"},
		{env, nil, "START_TIMESTAMP and END_TIMESTAMP"},
		{env, []string{"yesterday", "today"}, `START: invalid timestamp "yesterday"`},
		{env, []string{"2024-06-01 00:20:00.0+0000", "2024-06-01 00:00:00.0+0000"}, "is not before END"},
		{pgtest.Env(cfg), []string{"2024-06-01 00:00:00.0+0000", "2024-06-01 00:20:00.0+0000"}, "BLOCKS_DIR: missing"},
		{[]string{"BLOCKS_DIR=" + blocks}, []string{"2024-06-01 00:00:00.0+0000", "2024-06-01 00:20:00.0+0000"}, "POSTGRES_HOST: missing"},
	} {
		out, err := verifyCmd(tc.env, tc.args...).CombinedOutput()
		if exitCode(err) != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("verify %q: exit %d, output %q; want exit 2 and %q", tc.args, exitCode(err), out, tc.want)
		}
	}

	// The window from the environment, as a Kubernetes worker gets it.
	cmd := verifyCmd(append(env, "START_TIMESTAMP=2024-06-01 00:00:00.0+0000", "END_TIMESTAMP=2024-06-01 00:20:00.0+0000"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, stderr.String())
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "window 2024-06-01 00:00:00.0+0000 - 2024-06-01 00:20:00.0+0000: ") ||
		!strings.Contains(line, "block not found: ") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("summary %q", out)
	}
	if !strings.Contains(stderr.String(), "no SNARK verification") {
		t.Errorf("the log does not say that no SNARK verification is done:\n%s", stderr.String())
	}
	// A second run finds nothing left to do.
	out, err = verifyCmd(env, "2024-06-01 00:00:00.0+0000", "2024-06-01 00:20:00.0+0000").Output()
	if err != nil || !strings.Contains(string(out), ": 0 unverified submissions: 0 verified, 0 invalid") {
		t.Errorf("re-run: %v, %q", err, out)
	}
}
