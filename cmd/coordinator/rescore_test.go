package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// catchUpEnv puts the loop in catch-up mode: more than one batch behind,
// two batches per transaction (the crash tests' 5 batches: 2 + 2, then the
// last one alone).
var catchUpEnv = []string{"CATCH_UP_AFTER_BATCHES=1", "CATCH_UP_CHUNK_BATCHES=2"}

// TestCatchUpCrashSafety kills the loop in catch-up mode at every crash
// checkpoint (in the first or the second range transaction) and restarts
// it: a range commits whole or not at all, and the end result is the
// database of an undisturbed run batch after batch.
func TestCatchUpCrashSafety(t *testing.T) {
	t.Parallel()
	want := reference(t)
	for _, point := range []string{"verify#1", "load#2", "tx_begin#1", "tx_statehash#2", "tx_nodes#1", "tx_bot_logs#2",
		"tx_shortlist#1", "tx_points#2", "tx_evidence#1", "tx_scores#2", "tx_scoreboard#1", "tx_alerts#3", "committed#1"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			cfg := seeded(t)
			haltAndKill(t, cfg, point, catchUpEnv...)
			before := committed(t, cfg)
			if before%2 != 0 {
				t.Errorf("after the kill at %s: %d batches committed, want whole ranges of 2", point, before)
			}
			if point == "committed#1" && before != 2 {
				t.Errorf("killed after the first range's commit: %d batches committed, want 2", before)
			}
			out, err := coordinatorCmd(cfg, catchUpEnv, "run", "--batches", fmt.Sprint(batches-before)).CombinedOutput()
			if err != nil {
				t.Fatalf("rerun: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), `"msg":"caught up"`) && before < 4 {
				t.Errorf("the rerun did not catch up in ranges:\n%s", out)
			}
			if d := want.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
				t.Fatalf("database after a kill at %s differs from an uninterrupted run:\n%s", point, d)
			}
		})
	}
}

// scoring is a snapshot without the alert tables: rescore re-scores, it
// does not replay the alerts that were sent (see README).
func scoring(s pgtest.Snapshot) pgtest.Snapshot {
	out := pgtest.Snapshot{}
	for k, v := range s {
		if !strings.HasPrefix(k, "alert_") {
			out[k] = v
		}
	}
	return out
}

// flip makes the submissions of windows 1-3 of one producer in three
// invalid: what a verifier fix would change.
func flip(subs []coordinator.Submission) []coordinator.Submission {
	out := slices.Clone(subs)
	for i, s := range out {
		w := int(s.SubmittedAt.Sub(netStart) / (20 * time.Minute))
		if w >= 1 && w <= 3 && s.Submitter[len(s.Submitter)-1]%3 == 0 && s.Verified != nil && *s.Verified {
			f, e := false, "snark verification failed"
			out[i].Verified, out[i].ValidationError = &f, &e
		}
	}
	return out
}

// setVerification overwrites the verification columns of subs in place.
func setVerification(t *testing.T, cfg config.Postgres, subs []coordinator.Submission) {
	t.Helper()
	n := len(subs)
	who, at, ve := make([]string, n), make([]time.Time, n), make([]*string, n)
	v := make([]*bool, n)
	for i, s := range subs {
		who[i], at[i], ve[i], v[i] = s.Submitter, s.SubmittedAt, s.ValidationError, s.Verified
	}
	if _, err := pgtest.Pool(t, cfg).Exec(context.Background(), `UPDATE submissions s SET validation_error = u.ve, verified = u.v
		FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::bool[]) AS u(who, at, ve, v)
		WHERE s.submitter = u.who AND s.submitted_at = u.at`, who, at, ve, v); err != nil {
		t.Fatal(err)
	}
}

// rangeArgs covers the batches ending 40 to 80 minutes after the start.
var rangeArgs = []string{"--from", "2024-06-01T00:40:00Z", "--to", "2024-06-01 01:21:00"}

// flippedDB is a database scored batch after batch whose verification then
// changed in windows 1-3, and the snapshot of a scratch run on the changed
// data.
func flippedDB(t *testing.T) (config.Postgres, pgtest.Snapshot) {
	t.Helper()
	subs := crashNet()
	scratch := setup(t, flip(subs)).cfg
	runCoordinator(t, scratch, "run", "--batches", fmt.Sprint(batches))
	cfg := setup(t, subs).cfg
	runCoordinator(t, cfg, "run", "--batches", fmt.Sprint(batches))
	setVerification(t, cfg, flip(subs))
	return cfg, scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, scratch)))
}

// TestRescoreCrashSafety kills rescore at each crash checkpoint of its
// transaction: the database keeps the old result, and a rerun gives the
// scratch run's.
func TestRescoreCrashSafety(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"tx_begin#1", "load#1", "tx_statehash#1", "tx_nodes#1", "tx_shortlist#1", "tx_points#1",
		"tx_evidence#1", "tx_scores#1", "tx_scoreboard#1"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			cfg, want := flippedDB(t)
			old := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
			if d := want.Diff(scoring(old)); d == "" {
				t.Fatal("weak test: the flip changes nothing")
			}
			haltAndKillCmd(t, haltingCmd(cfg, point, append([]string{"rescore"}, rangeArgs...)...), point)
			if d := old.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
				t.Fatalf("a rescore killed at %s left changes:\n%s", point, d)
			}
			runCoordinator(t, cfg, append([]string{"rescore"}, rangeArgs...)...)
			if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))); d != "" {
				t.Fatalf("rescore after a kill at %s differs from a scratch run:\n%s", point, d)
			}
		})
	}
}

// TestRescoreCommand: the dry run's text and JSON reports name the
// producers whose points change and change nothing; the rescore then gives
// the scratch run's database; a dry run with nothing to change prints no
// producer; bad usage exits 2, a range into the loop's window exits 1.
func TestRescoreCommand(t *testing.T) {
	t.Parallel()
	cfg, want := flippedDB(t)
	before := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))

	// Producers that lose points: those flipped that had a point in windows
	// 1-3 (batches ending 00:40, 01:00 and 01:20), from the snapshots.
	lost := map[string][]string{}
	for _, r := range before["points_summary"] {
		f := strings.Split(r, "|")
		if !slices.Contains(want["points_summary"], r) {
			var end int64
			fmt.Sscan(f[0], &end)
			lost[f[1]] = append(lost[f[1]], time.Unix(end, 0).UTC().Format(time.RFC3339))
		}
	}
	if len(lost) == 0 {
		t.Fatal("weak test: nobody loses a point")
	}

	cmd := coordinatorCmd(cfg, nil, append([]string{"rescore", "--dry-run", "--format", "json"}, rangeArgs...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, stderr.String())
	}
	var rep struct {
		DryRun    bool `json:"dry_run"`
		Batches   int  `json:"batches"`
		Producers []struct {
			Producer           string   `json:"producer"`
			PointsBefore       int      `json:"points_before"`
			PointsAfter        int      `json:"points_after"`
			ScorePercentBefore *string  `json:"score_percent_before"`
			ScorePercentAfter  *string  `json:"score_percent_after"`
			BatchesGained      []string `json:"batches_gained"`
			BatchesLost        []string `json:"batches_lost"`
		} `json:"producers"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("dry run JSON: %v\n%s", err, out)
	}
	if !rep.DryRun || rep.Batches < 2 {
		t.Errorf("dry run report: dry_run %v, batches %d", rep.DryRun, rep.Batches)
	}
	got := map[string][]string{}
	for _, p := range rep.Producers {
		if len(p.BatchesLost) > 0 {
			got[p.Producer] = p.BatchesLost
		}
		if p.PointsBefore-p.PointsAfter != len(p.BatchesLost)-len(p.BatchesGained) {
			t.Errorf("%s: points %d -> %d but gained %v lost %v", p.Producer, p.PointsBefore, p.PointsAfter, p.BatchesGained, p.BatchesLost)
		}
		if p.ScorePercentBefore == nil || p.ScorePercentAfter == nil {
			t.Errorf("%s: score_percent %v -> %v", p.Producer, p.ScorePercentBefore, p.ScorePercentAfter)
		}
	}
	for k := range lost {
		slices.Sort(lost[k])
	}
	if fmt.Sprint(got) != fmt.Sprint(lost) {
		t.Errorf("dry run: producers losing batches\n%v\nwant\n%v", got, lost)
	}
	if !strings.Contains(stderr.String(), `"msg":"rescore finished"`) {
		t.Errorf("no summary logged:\n%s", stderr.String())
	}
	if d := before.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
		t.Fatalf("the dry run changed the database:\n%s", d)
	}

	text, err := coordinatorCmd(cfg, nil, append([]string{"rescore", "--dry-run"}, rangeArgs...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	for k := range lost {
		if !strings.Contains(string(text), k+"\n  points in range ") {
			t.Errorf("text report lacks %s:\n%s", k, text)
		}
	}

	runCoordinator(t, cfg, append([]string{"rescore"}, rangeArgs...)...)
	if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))); d != "" {
		t.Fatalf("rescored database differs from a scratch run:\n%s", d)
	}
	again, err := coordinatorCmd(cfg, nil, append([]string{"rescore", "--dry-run"}, rangeArgs...)...).Output()
	if err != nil || !strings.Contains(string(again), "no producer's outcome changes") || strings.Contains(string(again), "B62q") {
		t.Errorf("dry run with nothing to change (%v):\n%s", err, again)
	}

	for _, args := range [][]string{
		{"rescore"},
		{"rescore", "--from", "2024-06-01T00:40:00Z"},
		{"rescore", "--from", "yesterday", "--to", "2024-06-01 01:21:00"},
		{"rescore", "--from", "2024-06-01 01:21:00", "--to", "2024-06-01 01:21:00"},
		{"rescore", "--format", "xml", "--from", "2024-06-01T00:40:00Z", "--to", "2024-06-01 01:21:00"},
		{"reverify", "--to", "2024-06-01 01:21:00"},
	} {
		out, err := coordinatorCmd(cfg, nil, args...).CombinedOutput()
		if exitCode(err) != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, exitCode(err), out)
		}
	}
	// The loop works on the window ending at 02:00.
	out, err = coordinatorCmd(cfg, nil, "rescore", "--from", "2024-06-01T00:40:00Z", "--to", "2024-06-01T02:00:01Z").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "window the survey loop is working on") {
		t.Errorf("rescore into the loop's window: exit %d\n%s", exitCode(err), out)
	}
}

// TestReverifyRescore: block files missing at first make the bundled
// verifier (process mode) reject the submissions naming them; once the
// files are back, reverify --rescore gives the database of a run that had
// every block from the start.
func TestReverifyRescore(t *testing.T) {
	t.Parallel()
	const n = 3
	net := synthnet.Generate(synthnet.Params{Seed: 29, Producers: 80, Start: netStart, Duration: n * 20 * time.Minute})
	full, broken := blockDirs(t, net)
	process := func(blocks string) []string {
		return []string{"WORKER_MODE=process", "WORKER_COMMAND=" + shellquote.Join(binary, "verify"), "BLOCKS_DIR=" + blocks,
			"MINI_BATCH_NUMBER=3", "WORKER_TIMEOUT=2m"}
	}
	run := func(cfg config.Postgres, blocks string, args ...string) string {
		out, err := coordinatorCmd(cfg, process(blocks), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("coordinator %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	scratch := setup(t, net.Unverified()).cfg
	run(scratch, full, "run", "--batches", fmt.Sprint(n))
	want := scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, scratch)))

	cfg := setup(t, net.Unverified()).cfg
	run(cfg, broken, "run", "--batches", fmt.Sprint(n))
	if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))); d == "" {
		t.Fatal("weak test: the missing block files change nothing")
	}
	out := run(cfg, full, "reverify", "--from", "2024-06-01 00:00:00", "--to", "2024-06-01T01:00:01Z", "--rescore")
	if c := strings.Count(out, `"msg":"verifier launched"`); c != n*3 {
		t.Errorf("%d verifiers launched, want %d:\n%s", c, n*3, out)
	}
	if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))); d != "" {
		t.Fatalf("after reverify --rescore the database differs from a run with every block:\n%s", d)
	}
	if _, err := os.Stat(full); err != nil {
		t.Fatal(err)
	}
}

// blockDirs writes net's block files twice: all of them (full), and all but
// every fourth from the second on (broken), whose submissions fail to verify.
func blockDirs(t *testing.T, net *synthnet.Network) (full, broken string) {
	t.Helper()
	full = filepath.Join(t.TempDir(), "full")
	if err := synthnet.WriteBlockFiles(full, net.Blocks); err != nil {
		t.Fatal(err)
	}
	broken = filepath.Join(t.TempDir(), "broken")
	var kept []*synthnet.Block
	for i, b := range net.Blocks {
		if i%4 != 1 {
			kept = append(kept, b)
		}
	}
	if err := synthnet.WriteBlockFiles(broken, kept); err != nil {
		t.Fatal(err)
	}
	return full, broken
}
