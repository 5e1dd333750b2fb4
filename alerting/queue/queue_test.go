package queue_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// hits records the time of each request per path; /fail400 answers 400,
// /fail500 answers 500, anything else 200.
type hits struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func server(t *testing.T) (*httptest.Server, *hits) {
	h := &hits{at: map[string][]time.Time{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.at[r.URL.Path] = append(h.at[r.URL.Path], time.Now())
		h.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/fail400"):
			http.Error(w, "invalid_payload", http.StatusBadRequest)
		case strings.HasPrefix(r.URL.Path, "/fail500"):
			http.Error(w, "oops", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, h
}

func (h *hits) get(path string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at[path]...)
}

// testBundle is what a delivery test works with: its own database and a
// TLS receiver that records its hits, both closed with the test.
type testBundle struct {
	pool *pgxpool.Pool
	srv  *httptest.Server
	hits *hits
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	srv, h := server(t)
	return &testBundle{pool: pgtest.Pool(t, pgtest.NewDatabase(t)), srv: srv, hits: h}
}

// start runs a queue delivering to b's receiver (private addresses allowed,
// fast polling) until the test ends.
func start(t *testing.T, b *testBundle, opts queue.Options) *queue.Queue {
	t.Helper()
	opts.Policy = outbound.Policy{AllowPrivate: true}
	opts.Transport = b.srv.Client().Transport.(*http.Transport).Clone()
	opts.PollInterval = 50 * time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := queue.New(b.pool, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = q.Stop(ctx)
	})
	return q
}

func subscribe(t *testing.T, pool *pgxpool.Pool, url string) int64 {
	t.Helper()
	var id int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO alert_subscriptions (all_producers, channel, url, secret, rules)
		VALUES (true, 'slack', $1, 'x', '[]') RETURNING id`, url).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func msgs(sub int64, prefix string, n int) []queue.Outgoing {
	var out []queue.Outgoing
	for i := range n {
		out = append(out, queue.Outgoing{SubscriptionID: sub, Message: channels.Message{ID: queue.Key(prefix, i), Event: "test", Text: "hi"}})
	}
	return out
}

// TestDeadLetters: a 400 is not retried (dead at once), a 500 is retried
// until the attempts run out (dead after the last one); both are counted,
// and neither error names the URL's secret path.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	q := start(t, b, queue.Options{MaxAttempts: 3, RetryBase: 10 * time.Millisecond})
	bad := subscribe(t, b.pool, b.srv.URL+"/fail400/T0K3N")
	down := subscribe(t, b.pool, b.srv.URL+"/fail500/T0K3N")
	good := subscribe(t, b.pool, b.srv.URL+"/ok")
	out := append(append(msgs(bad, "bad", 1), msgs(down, "down", 1)...), msgs(good, "good", 2)...)
	if err := q.Enqueue(ctx, out); err != nil {
		t.Fatal(err)
	}
	// Enqueueing the same ids again adds nothing.
	if err := q.Enqueue(ctx, out); err != nil {
		t.Fatal(err)
	}
	if left, err := q.Drain(ctx, 20*time.Second); err != nil || left != 0 {
		t.Fatalf("drain: %d left, %v", left, err)
	}
	c, err := queue.Count(ctx, b.pool)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dead != 2 || c.Pending != 0 {
		t.Fatalf("counts %+v, want 2 dead and nothing pending", c)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queue.Collector(b.pool, slog.Default()))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP uptime_coordinator_alert_deliveries Alert deliveries by state: pending (queued or waiting for a retry) and dead (dead letters: attempts exhausted or refused for good).
# TYPE uptime_coordinator_alert_deliveries gauge
uptime_coordinator_alert_deliveries{state="dead"} 2
uptime_coordinator_alert_deliveries{state="pending"} 0
`)); err != nil {
		t.Errorf("/metrics: %v", err)
	}
	if n400, n500, nOK := len(b.hits.get("/fail400/T0K3N")), len(b.hits.get("/fail500/T0K3N")), len(b.hits.get("/ok")); n400 != 1 || n500 != 3 || nOK != 2 {
		t.Fatalf("attempts: 400 path %d (want 1), 500 path %d (want 3), ok path %d (want 2)", n400, n500, nOK)
	}
	rows, err := b.pool.Query(ctx, `SELECT o.attempts, coalesce(o.last_error, ''), o.delivered_at IS NOT NULL, j.state::text, j.errors::text
		FROM alert_outbox o JOIN river_job j ON j.args->>'outbox_id' = o.id ORDER BY o.subscription_id, o.id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var attempts int
		var lastErr, state string
		var delivered bool
		var errs *string
		if err := rows.Scan(&attempts, &lastErr, &delivered, &state, &errs); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(lastErr, "T0K3N") || (errs != nil && strings.Contains(*errs, "T0K3N")) {
			t.Errorf("an error names the URL's secret: %q %v", lastErr, *errs)
		}
		got = append(got, strings.Join([]string{state, lastErr, map[bool]string{true: "delivered", false: "undelivered"}[delivered]}, " | "))
	}
	want := []string{
		"cancelled | webhook answered 400 Bad Request: invalid_payload | undelivered",
		"discarded | webhook answered 500 Internal Server Error: oops | undelivered",
		"completed |  | delivered",
		"completed |  | delivered",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("jobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRateLimitPerDestination: a destination gets its burst at once and the
// rest no faster than its rate; another destination is not held up.
func TestRateLimitPerDestination(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	q := start(t, b, queue.Options{RatePerMinute: 120, Burst: 2}) // one every 500 ms after 2
	busy := subscribe(t, b.pool, b.srv.URL+"/busy")
	quiet := subscribe(t, b.pool, b.srv.URL+"/quiet")
	if err := q.Enqueue(ctx, append(msgs(busy, "busy", 5), msgs(quiet, "quiet", 2)...)); err != nil {
		t.Fatal(err)
	}
	if left, err := q.Drain(ctx, 30*time.Second); err != nil || left != 0 {
		t.Fatalf("drain: %d left, %v", left, err)
	}
	bz, qt := b.hits.get("/busy"), b.hits.get("/quiet")
	if len(bz) != 5 || len(qt) != 2 {
		t.Fatalf("busy got %d, quiet %d; want 5 and 2", len(bz), len(qt))
	}
	// 5 messages at 2 per second after a burst of 2: the last comes at
	// least 1.5 s after the first.
	if span := bz[4].Sub(bz[0]); span < 1400*time.Millisecond {
		t.Errorf("5 messages to one destination within %v: the rate limit did not hold", span)
	}
}

// TestOperatorMessages go to OperatorURL as Slack messages.
func TestOperatorMessages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	q := start(t, b, queue.Options{OperatorURL: b.srv.URL + "/operator"})
	if err := q.Enqueue(ctx, []queue.Outgoing{{Message: channels.Message{ID: "op1", Event: "operator", Text: "batch slow"}}}); err != nil {
		t.Fatal(err)
	}
	if left, err := q.Drain(ctx, 20*time.Second); err != nil || left != 0 {
		t.Fatalf("drain: %d left, %v", left, err)
	}
	if n := len(b.hits.get("/operator")); n != 1 {
		t.Fatalf("operator webhook got %d messages, want 1", n)
	}
}

// TestRebindingRefusedAtDelivery: a host that resolved to a public address
// when the subscription was made and resolves to loopback at delivery is
// refused (a dead letter at once), and the receiver is never reached.
func TestRebindingRefusedAtDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	port := b.srv.Listener.Addr().(*net.TCPAddr).Port
	opts := queue.Options{Transport: b.srv.Client().Transport.(*http.Transport).Clone(), PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Policy: outbound.Policy{Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil // what the attacker's DNS answers now
		}}}
	q, err := queue.New(b.pool, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Stop(context.Background()) })
	sub := subscribe(t, b.pool, fmt.Sprintf("https://rebind.example:%d/hook", port))
	if err := q.Enqueue(ctx, msgs(sub, "rebind", 1)); err != nil {
		t.Fatal(err)
	}
	if left, err := q.Drain(ctx, 20*time.Second); err != nil || left != 0 {
		t.Fatalf("drain: %d left, %v", left, err)
	}
	var state, lastErr string
	if err := b.pool.QueryRow(ctx, `SELECT j.state::text, o.last_error FROM alert_outbox o JOIN river_job j ON j.args->>'outbox_id' = o.id`).Scan(&state, &lastErr); err != nil {
		t.Fatal(err)
	}
	if state != "cancelled" || !strings.Contains(lastErr, "127.0.0.1 is a loopback address") || len(b.hits.get("/hook")) != 0 {
		t.Fatalf("job %s, error %q, receiver hit %d times: want a refusal naming loopback and no request", state, lastErr, len(b.hits.get("/hook")))
	}
}

// TestOutboxPruned: rows older than the retention go, recent ones stay.
func TestOutboxPruned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	if _, err := b.pool.Exec(ctx, `INSERT INTO alert_outbox (id, event, payload, created_at, delivered_at) VALUES
		('old', 'test', '{}', now() - interval '31 days', now() - interval '31 days'),
		('old-dead', 'test', '{}', now() - interval '31 days', NULL),
		('recent', 'test', '{}', now() - interval '29 days', now() - interval '29 days')`); err != nil {
		t.Fatal(err)
	}
	start(t, b, queue.Options{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ids []string
		rows, _ := b.pool.Query(ctx, `SELECT id FROM alert_outbox ORDER BY id`)
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			ids = append(ids, id)
		}
		if strings.Join(ids, ",") == "recent" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox rows %v 30 s after start, want only the recent one", ids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
