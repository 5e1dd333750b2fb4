package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// Issue 14: rescore "logs a summary that the alerter can send". The
// summary goes to WEBHOOK_URL through the alert outbox like the loop's
// batch alerts: delivered by the command itself when no coordinator runs,
// left to the running coordinator's queue when one holds the lock. A dry
// run sends nothing.
func TestRescoreAlertDelivered(t *testing.T) {
	t.Parallel()
	cfg, want := flippedDB(t)
	before := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
	// Batch points gained and lost, and the producers concerned, from the
	// snapshots of the flipped database and of a scratch run.
	gained, lost, producers := 0, 0, map[string]bool{}
	for _, r := range before["points_summary"] {
		if !strings.Contains(strings.Join(want["points_summary"], "\n")+"\n", r+"\n") {
			lost++
			producers[strings.Split(r, "|")[1]] = true
		}
	}
	for _, r := range want["points_summary"] {
		if !strings.Contains(strings.Join(before["points_summary"], "\n")+"\n", r+"\n") {
			gained++
			producers[strings.Split(r, "|")[1]] = true
		}
	}
	if lost == 0 {
		t.Fatal("weak test: nobody loses a point")
	}
	hook := newSlackHook(t)
	env := []string{"WEBHOOK_URL=" + hook.srv.URL + "/services/T000/B000/XXXX"}

	out, err := coordinatorCmd(cfg, env, append([]string{"rescore", "--dry-run"}, rangeArgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if got := hook.received(); len(got) != 0 {
		t.Errorf("a dry run sent %q", got)
	}

	out, err = coordinatorCmd(cfg, env, append([]string{"rescore"}, rangeArgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rescore: %v\n%s", err, out)
	}
	got := hook.received()
	const prefix = ":information_source: rescore of the batches ending in [2024-06-01 00:40:00, 2024-06-01 01:21:00) UTC finished: "
	counts := fmt.Sprintf("; %d producers changed outcome (%d batch points gained, %d lost); ", len(producers), gained, lost)
	if len(got) != 1 || !strings.HasPrefix(got[0], prefix) || !strings.Contains(got[0], counts) {
		t.Fatalf("operator alerts %q, want one starting %q and saying %q\n%s", got, prefix, counts, out)
	}
	if !strings.Contains(string(out), "the rescore alert is delivered") {
		t.Errorf("the command did not report the delivery:\n%s", out)
	}

	// A coordinator holds the lock: the alert waits in the outbox for its
	// queue (the command does not work the queue behind the lock holder).
	lock, err := postgres.Acquire(context.Background(), pgtest.Pool(t, cfg), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	out, err = coordinatorCmd(cfg, env, append([]string{"rescore"}, rangeArgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("second rescore: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "the rescore alert is queued; the running coordinator delivers it") || len(hook.received()) != 1 {
		t.Errorf("with a running coordinator: %d alerts received\n%s", len(hook.received()), out)
	}
	var queued int
	if err := pgtest.Pool(t, cfg).QueryRow(context.Background(), `SELECT count(*) FROM alert_outbox o JOIN river_job j ON j.args->>'outbox_id' = o.id
		WHERE o.payload->>'text' LIKE ':information_source: rescore of %' AND j.state = 'available'`).Scan(&queued); err != nil || queued != 1 {
		t.Errorf("%d rescore alerts waiting for the running coordinator (%v), want 1", queued, err)
	}
}
