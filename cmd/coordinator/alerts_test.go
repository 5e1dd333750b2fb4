package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alerting/alertingtest"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// killAt runs the coordinator until it halts at point, runs beforeKill (nil:
// none) and kills it with SIGKILL.
func killAt(t *testing.T, cfg config.Postgres, env []string, point string, beforeKill func(), args ...string) {
	t.Helper()
	var hooks []func()
	if beforeKill != nil {
		hooks = append(hooks, beforeKill)
	}
	haltAndKillCmd(t, coordinatorBinaryCmd(crashBinary, cfg, append(env, "COORDINATOR_HALT_AT="+point), args...), point, hooks...)
}

// TestAlertsSurviveKillsAndReceiverOutage: producers go offline and come
// back while the receiver answers 503 and the coordinator is SIGKILLed
// twice (inside a batch transaction after its alerts were written, and just
// after a commit); once the receiver is back, a last bounded run delivers
// every message the independent model expects, each exactly once, signed.
func TestAlertsSurviveKillsAndReceiverOutage(t *testing.T) {
	t.Parallel()
	const total = 12
	ctx := context.Background()
	net := synthnet.Generate(synthnet.Params{Seed: 23, Producers: 40, Start: netStart, Duration: total * 20 * time.Minute,
		OfflineShare: 0.4})
	b := setup(t, net.Verified())
	cfg, pool := b.cfg, b.pool
	recv := alertingtest.NewReceiver(t)
	recv.Failing.Store(true)
	subs := &subscriptions.Service{Pool: pool, Policy: outbound.Policy{AllowPrivate: true}, AdminToken: "admin-0123456789abcdef"}
	c, err := subs.Create(ctx, subscriptions.Spec{Producers: subscriptions.Producers{All: true}, Channel: "webhook",
		URL: recv.Server.URL + "/all", Rules: []rules.Rule{{Kind: rules.MissedBatches, Count: 2}}}, subs.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	recv.Register("/all", c.Secret)
	env := []string{"SSL_CERT_FILE=" + recv.CertFile(t), "ALERT_ALLOW_PRIVATE_NETWORKS=1", "ALERT_RETRY_BASE=20ms",
		"ALERT_RATE_PER_MINUTE=100000", "ALERT_DRAIN_TIMEOUT=1s"}

	// The queue works while the batch is halted: the kill waits (bounded)
	// until it has tried the receiver, which refused, so that the kills
	// fall on deliveries under way. Batches are quicker than the queue's
	// start on a loaded machine, which without the wait left nothing
	// tried.
	refused := func() {
		for deadline := time.Now().Add(30 * time.Second); recv.Refused.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	killAt(t, cfg, env, "tx_alerts#5", refused, "run", "--batches", fmt.Sprint(total)) // 4 committed
	if n := committed(t, cfg); n != 4 {
		t.Fatalf("%d batches committed after the first kill, want 4", n)
	}
	killAt(t, cfg, env, "committed#3", nil, "run", "--batches", fmt.Sprint(total-4)) // 7 committed
	if n := committed(t, cfg); n != 7 {
		t.Fatalf("%d batches committed after the second kill, want 7", n)
	}
	if recv.Refused.Load() == 0 {
		t.Fatal("the receiver refused nothing while down: no delivery was attempted before the kills")
	}
	if got := len(recv.Messages()); got != 0 {
		t.Fatalf("%d messages arrived while the receiver was down", got)
	}

	recv.Failing.Store(false)
	out, err := coordinatorCmd(cfg, append(env[:len(env)-1], "ALERT_DRAIN_TIMEOUT=60s"), "run", "--batches", fmt.Sprint(total-7)).CombinedOutput()
	if err != nil {
		t.Fatalf("last run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every queued alert is delivered") {
		t.Errorf("the last run did not say it delivered everything:\n%s", out)
	}

	want := alertingtest.Model(t, pool, net, net.Producers, 2, 0, 0, "")
	if len(want) < 8 {
		t.Fatalf("the model expects %d messages: too few to test anything", len(want))
	}
	var got []alertingtest.Event
	for id, ms := range recv.Messages() {
		if len(ms) != 1 {
			t.Errorf("message %s arrived %d times, want once", id, len(ms))
		}
		got = append(got, alertingtest.Of(t, ms[0]))
	}
	if g, w := alertingtest.Strings(got), alertingtest.Strings(want); !slices.Equal(g, w) {
		t.Fatalf("received %d messages, the model expects %d:\nreceived %v\nexpected %v", len(g), len(w), g, w)
	}
	counts, err := queue.Count(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var undelivered int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL`).Scan(&undelivered); err != nil {
		t.Fatal(err)
	}
	if counts.Pending != 0 || counts.Dead != 0 || undelivered != 0 {
		t.Fatalf("after the last run: %d pending, %d dead, %d undelivered outbox rows; want none", counts.Pending, counts.Dead, undelivered)
	}
	firing := map[string]bool{}
	for _, e := range want {
		firing[e.Producer] = e.Event == "fired"
	}
	wantFiring := 0
	for _, on := range firing {
		if on {
			wantFiring++
		}
	}
	js, err := coordinatorCmd(cfg, nil, "status", "--format", "json").Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st struct {
		Alerts map[string]int `json:"alerts"`
	}
	if err := json.Unmarshal(js, &st); err != nil {
		t.Fatal(err)
	}
	if w := map[string]int{"subscriptions": 1, "firing": wantFiring, "pending_deliveries": 0, "dead_letters": 0}; !maps.Equal(st.Alerts, w) {
		t.Errorf("status alerts %v, want %v", st.Alerts, w)
	}
	text, _ := coordinatorCmd(cfg, nil, "status").Output()
	if w := fmt.Sprintf("Alerts: 1 subscription, %d firing; deliveries: 0 pending, 0 dead letters\n", wantFiring); !strings.Contains(string(text), w) {
		t.Errorf("status text lacks %q:\n%s", w, text)
	}
	t.Logf("%d messages delivered once each; the receiver refused %d attempts while down", len(got), recv.Refused.Load())
}

// TestAbandonedBatchAlertDeliveredBeforeExit: a batch abandoned after its
// retries queues the operator alert in a transaction of its own, and the
// exiting coordinator delivers it before it exits (status 1).
func TestAbandonedBatchAlertDeliveredBeforeExit(t *testing.T) {
	t.Parallel()
	net := synthnet.Generate(synthnet.Params{Seed: 31, Producers: 40, Start: netStart, Duration: 20 * time.Minute})
	cfg := setup(t, synthnet.Window(net.Unverified(), coordinator.Window{Start: netStart, End: netStart.Add(20 * time.Minute)})).cfg
	hook := newSlackHook(t)
	out, err := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=true", "RETRY_COUNT=0",
		"WEBHOOK_URL=" + hook.srv.URL + "/services/T000/B000/XXXX"}, "run").CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1:\n%s", exitCode(err), out)
	}
	got := hook.received()
	if len(got) != 1 || !strings.Contains(got[0], "Batch 2024-06-01 00:00:00 – 00:20:00 UTC was abandoned after 1 attempt") {
		t.Fatalf("operator alerts %q, want the abandoned batch", got)
	}
	if !strings.Contains(string(out), "every queued alert is delivered") {
		t.Errorf("the exiting run did not wait for the alert:\n%s", out)
	}
}
