package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

func TestExplainAndStatusUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		message string
	}{
		{[]string{"explain"}, `coordinator: error: expected "<producer_key>"`},
		{[]string{"explain", "B62qx", "--format", "yaml"}, `coordinator: error: --format must be one of "text","json" but got "yaml"`},
		{[]string{"explain", "B62qx", "--from", "yesterday"}, `coordinator: error: explain: --from: invalid time "yesterday"`},
		{[]string{"explain", "B62qx", "--to", "2024-06-01 25:00:00"}, `coordinator: error: explain: --to: invalid time "2024-06-01 25:00:00"`},
		{[]string{"explain", "B62qx", "--from", "2024-06-02 00:00:00", "--to", "2024-06-01T00:00:00Z"},
			"coordinator: error: explain: --from 2024-06-02T00:00:00Z is not before --to 2024-06-01T00:00:00Z"},
		{[]string{"explain", "B62qx", "extra"}, "coordinator: error: unexpected argument extra"},
		{[]string{"status", "--format", "xml"}, `coordinator: error: --format must be one of "text","json" but got "xml"`},
		{[]string{"status", "extra"}, "coordinator: error: unexpected argument extra"},
	} {
		code, out, errOut := cli(t, tc.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tc.message) {
			t.Errorf("coordinator %q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.message)
		}
	}
}

// TestExplainAndStatusOnTheBinary runs both commands as the read-only user
// against a database the real coordinator scored.
func TestExplainAndStatusOnTheBinary(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	runCoordinator(t, cfg, "run", "--batches", fmt.Sprint(batches))
	pool := pgtest.Pool(t, cfg)
	ro := cfg
	ro.User, ro.Password = "ro_"+cfg.DB, "ro-secret"
	if _, err := postgres.CreateROUser(context.Background(), pool, cfg.DB, ro.User, ro.Password); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+ro.User)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+ro.User)
	})
	var key string
	var points int
	if err := pool.QueryRow(context.Background(), `SELECT n.block_producer_key, count(*) FROM points_summary ps JOIN nodes n ON n.id = ps.node_id
		GROUP BY 1 ORDER BY 2, 1 LIMIT 1`).Scan(&key, &points); err != nil {
		t.Fatal(err)
	}
	exe := func(args ...string) (int, string, string) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = pgtest.Env(ro)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		return exitCode(cmd.Run()), out.String(), errOut.String()
	}
	from, to := netStart.Format(time.DateTime), netStart.Add(24*time.Hour).Format(time.RFC3339)
	code, out, errOut := exe("explain", key, "--from", from, "--to", to, "--format", "json")
	if code != 0 {
		t.Fatalf("explain: exit %d, stderr %s", code, errOut)
	}
	var doc struct {
		Producer string
		Batches  []struct{ Point bool }
		Summary  struct{ Batches, Points, Missed int }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("explain --format json: %v\n%s", err, out)
	}
	if doc.Producer != key || len(doc.Batches) != batches || doc.Summary.Batches != batches || doc.Summary.Points != points || doc.Summary.Missed != batches-points {
		t.Errorf("explain %s: %+v; want %d batches and %d points", key, doc, batches, points)
	}
	code, out, _ = exe("explain", key, "--from", from, "--to", to)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d batches, %d point", batches, points)) {
		t.Errorf("explain (text): exit %d\n%s", code, out)
	}
	code, out, errOut = exe("explain", "B62qnobodyknowsthiskey")
	if code != 1 || out != "" || !strings.Contains(errOut, `unknown block producer key "B62qnobodyknowsthiskey"`) {
		t.Errorf("explain of an unknown key: exit %d, stdout %q, stderr %q; want 1 and a clear message", code, out, errOut)
	}
	code, out, errOut = exe("status", "--format", "json")
	var st struct {
		LastBatch struct {
			WindowEnd time.Time `json:"window_end"`
		} `json:"last_batch"`
		SchemaVersion int64 `json:"schema_version"`
		LockHolder    any   `json:"lock_holder"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	if !st.LastBatch.WindowEnd.Equal(netStart.Add(batches*20*time.Minute)) || st.SchemaVersion == 0 || st.LockHolder != nil {
		t.Errorf("status: %+v", st)
	}
	code, out, _ = exe("status")
	if code != 0 || !strings.Contains(out, "Lock holder: none") {
		t.Errorf("status (text): exit %d\n%s", code, out)
	}
}

// TestFailedAttemptsRecorded: a verifier that fails makes the batch fail;
// every attempt is recorded, the last one as abandoned, and status shows it.
func TestFailedAttemptsRecorded(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	cmd := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=false", "RETRY_COUNT=1"}, "run", "--batches", "1")
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("a failing verifier: exit %d, want 1\n%s", exitCode(err), out)
	}
	rows := strs(t, pgtest.Pool(t, cfg), `SELECT concat_ws('|', attempt, final, window_start, window_end) FROM coordinator_failures ORDER BY id`)
	want := []string{"1|f|2024-06-01 00:00:00+00|2024-06-01 00:20:00+00", "2|t|2024-06-01 00:00:00+00|2024-06-01 00:20:00+00"}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("coordinator_failures:\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	status := exec.Command(binary, "status")
	status.Dir, status.Env = t.TempDir(), pgtest.Env(cfg)
	text, err := status.CombinedOutput()
	if err != nil || !strings.Contains(string(text), "attempt 2, abandoned: ") || !strings.Contains(string(text), "Last batch: none committed yet") {
		t.Errorf("status: %v\n%s", err, text)
	}
}

func strs(t *testing.T, pool interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
