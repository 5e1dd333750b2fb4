package subscriptions_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	admin = "the-admin-token-0123456789abcdef"
	keyA  = "B62qmKzVYxQ2tHRkqaurjDUnQeSXiujTUNhpTXEXLPxG2WRp1Wfcv8s"
	keyB  = "B62qrPN5Y5yq8kGE3FbVKbGTdTAJNdtNtB5sNVpxyRwWGcDEhpMzc8g"
)

// resolver: hooks.example.com is public, intranet.example private.
func resolver(_ context.Context, host string) ([]netip.Addr, error) {
	switch host {
	case "hooks.example.com":
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	case "intranet.example":
		return []netip.Addr{netip.MustParseAddr("10.0.0.7")}, nil
	}
	return nil, errors.New("no such host")
}

func newStore(t *testing.T) (*subscriptions.Service, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	q, err := queue.New(pool, false, queue.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &subscriptions.Service{Pool: pool, Policy: outbound.Policy{Resolve: resolver}, AdminToken: admin, Queue: q}, pool
}

func spec() subscriptions.Spec {
	return subscriptions.Spec{Producers: subscriptions.Producers{Keys: []string{keyA, keyB, keyA}}, Channel: "webhook",
		URL: "https://hooks.example.com/uptime/s3cr3t", Rules: []rules.Rule{{Kind: rules.MissedBatches}, {Kind: rules.ScoreBelow, Window: "24h", Percent: 95}}}
}

func TestCreateGetDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	c, err := s.Create(ctx, spec(), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == 0 || len(c.Token) < 40 || len(c.Secret) != 64 {
		t.Fatalf("created %+v: want an id, a 256-bit token and a 256-bit hex secret", c)
	}
	// The token is stored hashed, never as is.
	var hash []byte
	var row string
	if err := pool.QueryRow(ctx, `SELECT token_hash, s::text FROM alert_subscriptions s WHERE id = $1`, c.ID).Scan(&hash, &row); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(c.Token)); string(hash) != string(want[:]) || strings.Contains(row, c.Token) {
		t.Fatalf("token stored as %x (row %s), want its sha256 only", hash, row)
	}

	got, err := s.Get(ctx, c.ID, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "hooks.example.com" || got.Channel != "webhook" || got.Source != "api" || len(got.Producers.Keys) != 2 ||
		len(got.Rules) != 2 || got.Rules[0].Count != 3 {
		t.Fatalf("got %+v: want the host only, both producers once, missed_batches with its default count 3", got)
	}
	for _, tok := range []string{"", "wrong", c.Token + "x"} {
		if _, err := s.Get(ctx, c.ID, tok); !errors.Is(err, subscriptions.ErrNotFound) {
			t.Errorf("Get with token %q: %v, want ErrNotFound", tok, err)
		}
		if err := s.Delete(ctx, c.ID, tok); !errors.Is(err, subscriptions.ErrNotFound) {
			t.Errorf("Delete with token %q: %v, want ErrNotFound", tok, err)
		}
	}
	if _, err := s.Get(ctx, c.ID, admin); err != nil {
		t.Errorf("Get with the admin token: %v", err)
	}
	if _, err := s.Get(ctx, c.ID+1, c.Token); !errors.Is(err, subscriptions.ErrNotFound) {
		t.Errorf("Get of another id: %v, want ErrNotFound", err)
	}

	key, err := s.Test(ctx, c.ID, c.Token, time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var event string
	var jobs int
	if err := pool.QueryRow(ctx, `SELECT o.event, (SELECT count(*) FROM river_job j WHERE j.args->>'outbox_id' = o.id)
		FROM alert_outbox o WHERE o.id = $1 AND o.subscription_id = $2`, key, c.ID).Scan(&event, &jobs); err != nil {
		t.Fatal(err)
	}
	if event != "test" || jobs != 1 {
		t.Fatalf("test message: event %q with %d delivery jobs, want test with 1", event, jobs)
	}

	if _, err := pool.Exec(ctx, `INSERT INTO alert_state (subscription_id, rule_key, producer) VALUES ($1, 'missed_batches:3', $2)`, c.ID, keyA); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, c.ID, c.Token); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM alert_subscriptions) + (SELECT count(*) FROM alert_state) + (SELECT count(*) FROM alert_outbox)`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d rows left after the delete, want none (state and outbox go with the subscription)", left)
	}
	if _, err := s.Get(ctx, c.ID, c.Token); !errors.Is(err, subscriptions.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
}

func TestEveryProducerNeedsAdmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	all := spec()
	all.Producers = subscriptions.Producers{All: true}
	for _, tok := range []string{"", "someone", admin + "x"} {
		if _, err := s.Create(ctx, all, tok); !errors.Is(err, subscriptions.ErrForbidden) {
			t.Errorf(`"*" with token %q: %v, want ErrForbidden`, tok, err)
		}
	}
	if _, err := s.Create(ctx, all, admin); err != nil {
		t.Errorf(`"*" with the admin token: %v`, err)
	}
	s.AdminToken = ""
	if _, err := s.Create(ctx, all, ""); !errors.Is(err, subscriptions.ErrForbidden) {
		t.Errorf(`"*" without ADMIN_API_TOKEN configured: %v, want ErrForbidden`, err)
	}
}

func TestCreateRefusesBadSpecs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	for _, tc := range []struct {
		name   string
		change func(*subscriptions.Spec)
		want   string
	}{
		{"bad key", func(s *subscriptions.Spec) { s.Producers.Keys = []string{"B62short"} }, `producer "B62short" is not a public key`},
		{"no producer", func(s *subscriptions.Spec) { s.Producers.Keys = nil }, "producers is empty"},
		{"bad channel", func(s *subscriptions.Spec) { s.Channel = "email" }, `channel must be slack, discord or webhook, got "email"`},
		{"http", func(s *subscriptions.Spec) { s.URL = "http://hooks.example.com/x" }, "the URL must be https"},
		{"private", func(s *subscriptions.Spec) { s.URL = "https://intranet.example/x" }, "10.0.0.7 is a private address"},
		{"loopback", func(s *subscriptions.Spec) { s.URL = "https://127.0.0.1/x" }, "127.0.0.1 is a loopback address"},
		{"link-local", func(s *subscriptions.Spec) { s.URL = "https://169.254.169.254/latest/meta-data" }, "is link-local"},
		{"no url", func(s *subscriptions.Spec) { s.URL = "" }, "url is missing"},
		{"no rules", func(s *subscriptions.Spec) { s.Rules = nil }, "rules is empty"},
		{"bad rule", func(s *subscriptions.Spec) {
			s.Rules = []rules.Rule{{Kind: rules.ScoreBelow, Window: "1y", Percent: 9}}
		}, `rules[0]: score_below: window must be 24h, 7d, 30d or 90d, got "1y"`},
		{"unknown class", func(s *subscriptions.Spec) { s.Rules = []rules.Rule{{Kind: rules.ErrorClass, Class: "cosmic_rays"}} }, `unknown error class "cosmic_rays"`},
	} {
		sp := spec()
		tc.change(&sp)
		_, err := s.Create(ctx, sp, admin)
		if !errors.Is(err, subscriptions.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
	// Every problem is named at once.
	_, err := s.Create(ctx, subscriptions.Spec{Channel: "sms"}, admin)
	for _, want := range []string{"producers is empty", "channel must be", "url is missing", "rules is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty spec: %v, want it to name %q", err, want)
		}
	}
}

func TestFileReconcile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "subs.yaml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	apiSub, err := s.Create(ctx, spec(), "")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := s.ReadFile(ctx, write(`subscriptions:
  - name: ops
    producers: "*"
    channel: slack
    url: https://hooks.example.com/services/T/B/x
    rules:
      - {kind: missed_batches, count: 6}
  - name: acme
    producers: [`+keyA+`, `+keyB+`]
    channel: webhook
    url: https://hooks.example.com/acme
    secret: acme-shared-secret-123
    rules:
      - {kind: score_below, window: 7d, percent: 90}
      - {kind: error_class, class: sok_digest_mismatch}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c, k, d, err := s.Reconcile(ctx, entries); err != nil || c != 2 || k != 0 || d != 0 {
		t.Fatalf("first reconcile: created %d kept %d deleted %d, %v; want 2 0 0", c, k, d, err)
	}
	var acme int64
	if err := pool.QueryRow(ctx, `SELECT id FROM alert_subscriptions WHERE file_name = 'acme'`).Scan(&acme); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO alert_state (subscription_id, rule_key, producer) VALUES
		($1, 'score_below:7d:90', $2), ($1, 'error_class:sok_digest_mismatch', $2), ($1, 'error_class:sok_digest_mismatch', $3)`, acme, keyA, keyB); err != nil {
		t.Fatal(err)
	}
	// acme drops keyB and the score rule; ops goes away.
	entries, err = s.ReadFile(ctx, write(`subscriptions:
  - name: acme
    producers: [`+keyA+`]
    channel: webhook
    url: https://hooks.example.com/acme
    secret: acme-shared-secret-123
    rules:
      - {kind: error_class, class: sok_digest_mismatch}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c, k, d, err := s.Reconcile(ctx, entries); err != nil || c != 0 || k != 1 || d != 1 {
		t.Fatalf("second reconcile: created %d kept %d deleted %d, %v; want 0 1 1", c, k, d, err)
	}
	var state []string
	rows, _ := pool.Query(ctx, `SELECT rule_key || ' ' || producer FROM alert_state ORDER BY 1`)
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		state = append(state, s)
	}
	if len(state) != 1 || state[0] != "error_class:sok_digest_mismatch "+keyA {
		t.Fatalf("alert state after reconcile %v, want only the error_class alert of %s", state, keyA)
	}
	if _, err := s.Get(ctx, apiSub.ID, apiSub.Token); err != nil {
		t.Fatalf("the API's subscription was touched by the file: %v", err)
	}

	for _, tc := range []struct{ text, want string }{
		{"subscriptions:\n  - name: a\n    producers: \"*\"\n    channel: webhook\n    url: https://hooks.example.com/a\n    rules: [{kind: missed_batches}]\n", "subscriptions[0] (a): the webhook channel needs a secret"},
		{"subscriptions:\n  - name: a\n    producers: \"*\"\n    channel: slack\n    url: https://hooks.example.com/a\n    rules: [{kind: missed_batches}]\n  - name: a\n    producers: \"*\"\n    channel: slack\n    url: https://hooks.example.com/a\n    rules: [{kind: missed_batches}]\n", "subscriptions[1] (a): name is used twice"},
		{"subscriptions:\n  - name: a\n    producer: \"*\"\n", "field producer not found"},
		{"subscriptions:\n  - producers: all\n", `producers must be "*" or a list of public keys, got "all"`},
		{"subscriptions:\n  - name: b\n    producers: \"*\"\n    channel: slack\n    url: https://intranet.example/a\n    rules: [{kind: missed_batches}]\n", "subscriptions[0] (b): invalid subscription: url: intranet.example: refused by the outbound policy: 10.0.0.7 is a private address"},
	} {
		if _, err := s.ReadFile(ctx, write(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q: %v, want an error naming %q", tc.text, err, tc.want)
		}
	}
}
