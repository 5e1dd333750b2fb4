package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

type commit struct {
	at  time.Time
	end time.Time
	who string
}

// commits parses the "batch committed" lines of a coordinator's log.
func commits(t *testing.T, who, log string) []commit {
	t.Helper()
	var out []commit
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time      time.Time `json:"time"`
			Msg       string    `json:"msg"`
			WindowEnd time.Time `json:"window_end"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "batch committed" {
			continue
		}
		out = append(out, commit{at: l.Time, end: l.WindowEnd, who: who})
	}
	return out
}

// Issue 10 item 4: Postgres restarts under a running coordinator (its
// session advisory lock dies with its connection) and a second coordinator
// starts. The first used to go on scoring without the lock, alongside the
// second. Now the first stops scoring at once and takes the lock again:
// exactly one of the two scores after the restart, the other exits 1 saying
// why, and at no moment do both commit batches.
func TestLockLostOnPostgresRestart(t *testing.T) {
	t.Parallel()
	const windows = 30
	cluster, cfg := ownCluster(t, windows)
	env := []string{"WORKER_MODE=process", "WORKER_COMMAND=sh -c 'sleep 0.3' verifier", "MINI_BATCH_NUMBER=1", "RETRY_COUNT=10"}
	start := func(name string) (*exec.Cmd, *syncBuffer, chan error) {
		var out syncBuffer
		cmd := coordinatorCmd(cfg, env, "run")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, &out, done
	}
	a, aOut, aDone := start("A")
	if !waitFor(60*time.Second, func() bool { return strings.Count(aOut.String(), `"msg":"batch committed"`) >= 3 }) {
		t.Fatalf("A did not commit 3 batches:\n%s", aOut.String())
	}
	if err := cluster.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	b, bOut, bDone := start("B")

	// Wait until every window with data is committed, then stop whoever is
	// still running; the other must have exited 1 on its own by then.
	var aErr, bErr error
	aExited, bExited := false, false
	ok := waitFor(120*time.Second, func() bool {
		select {
		case aErr = <-aDone:
			aExited = true
		default:
		}
		select {
		case bErr = <-bDone:
			bExited = true
		default:
		}
		return count(t, cfg, `SELECT count(*) FROM bot_logs WHERE files_processed > -1 AND batch_end_epoch <= $1`,
			netStart.Add(windows*20*time.Minute).Unix()) >= windows && (aExited || bExited)
	})
	if !ok {
		t.Fatalf("not all windows committed, or both coordinators still running (A exited %v, B exited %v)\nA:\n%s\nB:\n%s",
			aExited, bExited, aOut.String(), bOut.String())
	}
	if aExited == bExited {
		t.Fatalf("both coordinators exited (A: %v, B: %v)\nA:\n%s\nB:\n%s", aErr, bErr, aOut.String(), bOut.String())
	}
	survivor, survivorDone := a, aDone
	loserErr, loserOut, winner := bErr, bOut.String(), "A"
	if aExited {
		survivor, survivorDone = b, bDone
		loserErr, loserOut, winner = aErr, aOut.String(), "B"
	}
	_ = survivor.Process.Signal(syscall.SIGTERM)
	if err := <-survivorDone; err != nil {
		t.Errorf("the surviving coordinator %s: %v", winner, err)
	}
	if exitCode(loserErr) != 1 || !strings.Contains(loserOut, "another coordinator") {
		t.Errorf("the other coordinator: exit %d, want 1 with a message naming another coordinator:\n%s", exitCode(loserErr), loserOut)
	}
	if !strings.Contains(aOut.String(), "scoring stopped: the coordinator's advisory lock was lost") {
		t.Errorf("A did not report the lost lock:\n%s", aOut.String())
	}

	// No interleaving: sorted by time, the commits are A's, then B's.
	all := append(commits(t, "A", aOut.String()), commits(t, "B", bOut.String())...)
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	switched := false
	for i := 1; i < len(all); i++ {
		if all[i].who != all[i-1].who {
			if switched || all[i-1].who != "A" {
				t.Fatalf("commits interleave: %s at %s after %s at %s", all[i].who, all[i].at, all[i-1].who, all[i-1].at)
			}
			switched = true
			if all[i-1].at.After(restarted) {
				t.Errorf("A committed at %s, after the restart at %s, and then B committed", all[i-1].at, restarted)
			}
		}
	}
	// Every window once, none skipped.
	if n := count(t, cfg, `SELECT count(*) - count(DISTINCT batch_end_epoch) FROM bot_logs`); n != 0 {
		t.Errorf("%d windows committed twice", n)
	}
	if n := count(t, cfg, `SELECT count(*) FROM bot_logs b WHERE files_processed > -1 AND NOT EXISTS
		(SELECT 1 FROM bot_logs p WHERE p.batch_end_epoch = b.batch_start_epoch)`); n != 0 {
		t.Errorf("%d batches do not start where another ended", n)
	}
	t.Logf("%s scored after the restart; %d commits in all", winner, len(all))
}
