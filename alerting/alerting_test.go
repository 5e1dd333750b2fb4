package alerting_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting"
	"github.com/delegation-program/uptime-coordinator/alerting/alertingtest"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const adminToken = "admin-token-for-tests-0123456789"

type setup struct {
	pool  *pgxpool.Pool
	net   *synthnet.Network
	recv  *alertingtest.Receiver
	queue *queue.Queue
	subs  *subscriptions.Service
	eng   *coordinator.Engine
}

func newSetup(t *testing.T, batches int) *setup {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	interval := 20 * time.Minute
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
	net := synthnet.Generate(synthnet.Params{Seed: 11, Producers: 40, Start: start, Duration: time.Duration(batches) * interval,
		OfflineShare: 0.4, InvalidShare: 0.05})
	if _, err := pgtest.InsertSubmissions(ctx, pool, net.Verified()); err != nil {
		t.Fatal(err)
	}
	recv := alertingtest.NewReceiver(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := queue.New(pool, true, queue.Options{Policy: outbound.Policy{AllowPrivate: true}, Transport: recv.Transport(),
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		RatePerMinute: 60000, Burst: 1000, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = q.Stop(ctx)
	})
	store := &postgres.Database{Pool: pool}
	ev := &alerting.Evaluator{Queue: q, PublicURL: "https://uptime.example.org/", Logger: log}
	store.Steps = []postgres.Step{{Name: alerting.StepName, Run: ev.Step}}
	eng := &coordinator.Engine{Ledger: store, Source: store, Interval: interval, MiniBatches: 5, UptimeDays: 90,
		Logger: log, Now: func() time.Time { return start.Add(365 * 24 * time.Hour) }}
	return &setup{pool: pool, net: net, recv: recv, queue: q, eng: eng,
		subs: &subscriptions.Service{Pool: pool, Policy: outbound.Policy{AllowPrivate: true}, AdminToken: adminToken, Queue: q}}
}

func (s *setup) subscribe(t *testing.T, path string, spec subscriptions.Spec) subscriptions.Created {
	t.Helper()
	spec.URL = s.recv.Server.URL + path
	c, err := s.subs.Create(context.Background(), spec, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	s.recv.Register(path, c.Secret)
	return c
}

func (s *setup) run(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.eng.RunBatch(context.Background()); err != nil {
			t.Fatalf("batch %d: %v", i+1, err)
		}
	}
}

// TestProducersOfflineAndBack: a network where some producers go offline
// for hours and come back; a webhook subscribed to every producer gets
// exactly the fired and resolved messages an independent model expects,
// each once, signed, and a Slack subscription to three producers gets
// their texts.
func TestProducersOfflineAndBack(t *testing.T) {
	t.Parallel()
	const batches = 24
	s := newSetup(t, batches)
	all := s.subscribe(t, "/all", subscriptions.Spec{Producers: subscriptions.Producers{All: true}, Channel: "webhook",
		Rules: []rules.Rule{{Kind: rules.MissedBatches}, {Kind: rules.ScoreBelow, Window: "24h", Percent: 80}, {Kind: rules.ScoreBelow, Window: "90d", Percent: 85}}})
	// Three producers, on Slack, with a score rule only for them.
	three := []string{s.net.Producers[0], s.net.Producers[1], s.net.Producers[2]}
	s.subscribe(t, "/slack", subscriptions.Spec{Producers: subscriptions.Producers{Keys: three}, Channel: "slack",
		Rules: []rules.Rule{{Kind: rules.ScoreBelow, Window: "24h", Percent: 99}}})
	s.run(t, batches)
	if left, err := s.queue.Drain(context.Background(), 30*time.Second); err != nil || left != 0 {
		t.Fatalf("drain: %d left, %v", left, err)
	}

	want := alertingtest.Model(t, s.pool, s.net, s.net.Producers, 3, 24*time.Hour, 80, "score_below:24h:80")
	// 90d is UPTIME_DAYS_FOR_SCORE: read from nodes.score_percent.
	want90 := alertingtest.Model(t, s.pool, s.net, s.net.Producers, 1_000_000, 90*24*time.Hour, 85, "score_below:90d:85")
	if len(want90) == 0 {
		t.Fatal("the 90d rule gives no alert: the test would not check it")
	}
	want = append(want, want90...)
	var fired, resolved int
	for _, e := range want {
		if e.Event == "fired" {
			fired++
		} else {
			resolved++
		}
	}
	if fired < 5 || resolved < 3 {
		t.Fatalf("the network gives %d fired and %d resolved alerts: too few to test anything", fired, resolved)
	}
	t.Logf("model: %d fired, %d resolved", fired, resolved)
	var got []alertingtest.Event
	for id, ms := range s.recv.Messages() {
		if len(ms) != 1 {
			t.Errorf("message %s delivered %d times", id, len(ms))
		}
		m := ms[0]
		got = append(got, alertingtest.Of(t, m))
		if !strings.Contains(m.Text, m.Producer) || !strings.Contains(m.Text, "https://uptime.example.org/producers/"+m.Producer) {
			t.Errorf("message text %q does not name and link the producer", m.Text)
		}
		if m.Event == "fired" && m.Rule.Kind == rules.MissedBatches && !strings.Contains(m.Text, "no point in the last 3 consecutive batches; this batch: ") {
			t.Errorf("fired missed_batches text %q lacks the reason", m.Text)
		}
		if m.BotLogID == 0 || !strings.HasSuffix(m.WindowEnd, "Z") {
			t.Errorf("message %+v: want a bot_log_id and a UTC window_end", m)
		}
	}
	if g, w := alertingtest.Strings(got), alertingtest.Strings(want); !slices.Equal(g, w) {
		t.Fatalf("received %d messages, model expects %d:\nreceived %v\nexpected %v", len(g), len(w), g, w)
	}

	// The Slack subscription: one text per event of its three producers.
	slack := alertingtest.Model(t, s.pool, s.net, three, 1_000_000, 24*time.Hour, 99, "score_below:24h:99")
	texts := s.recv.Texts("/slack")
	if len(slack) == 0 || len(texts) != len(slack) {
		t.Fatalf("slack got %d texts, the model expects %d", len(texts), len(slack))
	}
	for _, e := range slack {
		want := "Alert: producer " + e.Producer + " — 24h score below 99%"
		if e.Event == "resolved" {
			want = "Resolved: producer " + e.Producer + " — 24h score below 99%"
		}
		n := 0
		for _, tx := range texts {
			if strings.Contains(tx, want) && strings.Contains(tx, e.WindowEnd.Format("15:04:05")+" UTC") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("slack: %d texts for %s, want 1", n, e)
		}
	}

	// The state left: exactly the alerts the model leaves firing.
	firing := map[string]bool{}
	for _, e := range want {
		firing[e.Producer+" "+e.Rule] = e.Event == "fired"
	}
	var wantState []string
	for k, on := range firing {
		if on {
			wantState = append(wantState, k)
		}
	}
	slices.Sort(wantState)
	rows, _ := s.pool.Query(context.Background(), `SELECT producer || ' ' || rule_key FROM alert_state WHERE subscription_id = $1 ORDER BY 1`, all.ID)
	gotState, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotState, wantState) {
		t.Errorf("alert_state %v, want %v", gotState, wantState)
	}
}
