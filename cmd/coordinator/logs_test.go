package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// records parses the JSON log records in out (other lines are skipped).
func records(out []byte) []map[string]any {
	var recs []map[string]any
	for _, line := range strings.Split(string(out), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// TestDebugLogShowsPhases: LOG_LEVEL=debug logs the time of each phase of a
// batch, as Go duration strings; info does not.
func TestDebugLogShowsPhases(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	out, err := coordinatorCmd(cfg, []string{"LOG_LEVEL=debug"}, "run", "--batches", "1").Output()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	phases, steps := map[string]bool{}, map[string]bool{}
	for _, rec := range records(out) {
		if rec["msg"] == "batch transaction step done" {
			if _, err := time.ParseDuration(rec["took"].(string)); err != nil || rec["level"] != "DEBUG" {
				t.Errorf("step record %v", rec)
			}
			steps[rec["step"].(string)] = true
			continue
		}
		if rec["msg"] != "batch phase done" {
			continue
		}
		if rec["level"] != "DEBUG" {
			t.Errorf("phase record at level %v", rec["level"])
		}
		took, _ := rec["took"].(string)
		if _, err := time.ParseDuration(took); err != nil {
			t.Errorf("phase %v took %v: want a Go duration string", rec["phase"], rec["took"])
		}
		phases[rec["phase"].(string)] = true
	}
	// WORKER_MODE=none: no verify phase; the window is in the past: no wait.
	for _, want := range []string{"read_last_batch", "load_submissions", "score", "commit"} {
		if !phases[want] {
			t.Errorf("no debug record for phase %s; got %v", want, phases)
		}
	}
	// The commit's steps, too.
	for _, want := range []string{"statehash", "nodes", "bot_logs", "points", "scores", "notify"} {
		if !steps[want] {
			t.Errorf("no debug record for the transaction step %s; got %v", want, steps)
		}
	}

	cfg = seeded(t)
	out, err = coordinatorCmd(cfg, []string{"LOG_LEVEL=info"}, "run", "--batches", "1").Output()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "batch phase done") {
		t.Error("phase records at LOG_LEVEL=info")
	}
}

// TestAbandonedBatchIsAnError: a batch that fails after its retries is an
// ERROR record naming the window, and the process exits 1.
func TestAbandonedBatchIsAnError(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	cmd := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=false", "RETRY_COUNT=0", "WORKER_TIMEOUT=1m"},
		"run", "--batches", "1")
	out, err := cmd.Output()
	if code := exitCode(err); code != 1 {
		t.Fatalf("run with a failing verifier: exit %d, want 1\n%s", code, out)
	}
	found := false
	for _, rec := range records(out) {
		if rec["msg"] == "batch abandoned; the coordinator stops" {
			found = true
			if rec["level"] != "ERROR" || rec["window_start"] != "2024-06-01T00:00:00Z" || rec["window_end"] != "2024-06-01T00:20:00Z" ||
				rec["attempts"] != float64(1) || !strings.Contains(rec["error"].(string), "verifying submissions") {
				t.Errorf("abandoned record %v", rec)
			}
		}
	}
	if !found {
		t.Errorf("no ERROR record for the abandoned batch:\n%s", out)
	}
}
