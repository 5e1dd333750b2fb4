package subapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/serve"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	admin = "admin-token-0123456789abcdef0123"
	keyA  = "B62qmKzVYxQ2tHRkqaurjDUnQeSXiujTUNhpTXEXLPxG2WRp1Wfcv8s"
)

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, token, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader([]byte(body)))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: %d %s: not JSON", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// TestSubscriptionAPI runs `coordinator serve` as the read-only user that
// create-ro-user made and manages subscriptions through its API.
func TestSubscriptionAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, pg)
	if err := postgres.InitDatabase(ctx, pool, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), false); err != nil {
		t.Fatal(err)
	}
	ro := "subs_ro_" + pg.DB
	if _, err := postgres.CreateROUser(ctx, pool, pg.DB, ro, "ro-secret"); err != nil {
		t.Fatal(err)
	}
	pg.ROUser, pg.ROPassword = ro, "ro-secret"
	cfg := &config.Serve{Postgres: pg, UptimeDays: 90, Addr: "127.0.0.1:0", AdminAPIToken: admin}
	sctx, stop := context.WithCancel(ctx)
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(sctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a string) { addr <- a })
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	var c client
	select {
	case a := <-addr:
		c = client{t, "http://" + a}
	case err := <-done:
		t.Fatalf("serve stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}

	spec := `{"producers": ["` + keyA + `"], "channel": "webhook", "url": "https://93.184.216.34/hooks/T0K3N", "rules": [{"kind": "missed_batches"}, {"kind": "score_below", "window": "24h", "percent": 95}]}`
	code, created := c.do("POST", "/api/v1/subscriptions", "", spec)
	if code != http.StatusCreated || created["id"] == nil || len(created["token"].(string)) < 40 || len(created["secret"].(string)) != 64 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := "/api/v1/subscriptions/" + jsonNumber(created["id"])
	token := created["token"].(string)

	for _, tc := range []struct {
		name, token, body string
		code              int
		detail            string
	}{
		{"every producer without the admin token", "", `{"producers": "*", "channel": "slack", "url": "https://93.184.216.34/x", "rules": [{"kind": "missed_batches"}]}`, 403, "needs the admin token"},
		{"every producer with another token", token, `{"producers": "*", "channel": "slack", "url": "https://93.184.216.34/x", "rules": [{"kind": "missed_batches"}]}`, 403, "needs the admin token"},
		{"loopback URL", "", `{"producers": ["` + keyA + `"], "channel": "slack", "url": "https://127.0.0.1/x", "rules": [{"kind": "missed_batches"}]}`, 400, "127.0.0.1 is a loopback address"},
		{"link-local URL", "", `{"producers": ["` + keyA + `"], "channel": "slack", "url": "https://169.254.169.254/x", "rules": [{"kind": "missed_batches"}]}`, 400, "is link-local"},
		{"bad window", "", `{"producers": ["` + keyA + `"], "channel": "slack", "url": "https://93.184.216.34/x", "rules": [{"kind": "score_below", "window": "1h", "percent": 90}]}`, 400, `window must be 24h, 7d, 30d or 90d, got \"1h\"`},
		{"producers neither list nor star", "", `{"producers": "all", "channel": "slack", "url": "https://93.184.216.34/x", "rules": [{"kind": "missed_batches"}]}`, 400, ""},
		{"bad channel", "", `{"producers": ["` + keyA + `"], "channel": "email", "url": "https://93.184.216.34/x", "rules": [{"kind": "missed_batches"}]}`, 400, ""},
	} {
		code, body := c.do("POST", "/api/v1/subscriptions", tc.token, tc.body)
		raw, _ := json.Marshal(body)
		if code != tc.code || !strings.Contains(string(raw), tc.detail) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, code, raw, tc.code, tc.detail)
		}
	}
	if code, body := c.do("POST", "/api/v1/subscriptions", admin, `{"producers": "*", "channel": "discord", "url": "https://93.184.216.34/x", "rules": [{"kind": "error_class", "class": "sok_digest_mismatch"}]}`); code != 201 {
		t.Errorf(`"*" with the admin token: %d %v`, code, body)
	}

	if code, _ := c.do("GET", id, "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET without a token: %d, want 401", code)
	}
	if code, _ := c.do("GET", id, "not-the-token", ""); code != http.StatusNotFound {
		t.Errorf("GET with a wrong token: %d, want 404", code)
	}
	code, got := c.do("GET", id, token, "")
	raw, _ := json.Marshal(got)
	if code != 200 || got["host"] != "93.184.216.34" || strings.Contains(string(raw), "T0K3N") ||
		!strings.Contains(string(raw), `"rules":[{"count":3,"kind":"missed_batches"},{"kind":"score_below","percent":95,"window":"24h"}]`) {
		t.Errorf("GET: %d %s", code, raw)
	}
	code, sent := c.do("POST", id+"/test", token, "")
	if code != http.StatusAccepted || sent["id"] == nil {
		t.Fatalf("test message: %d %v", code, sent)
	}
	var event string
	var jobs int
	if err := pool.QueryRow(ctx, `SELECT o.event, (SELECT count(*) FROM river_job j WHERE j.args->>'outbox_id' = o.id) FROM alert_outbox o WHERE o.id = $1`,
		sent["id"]).Scan(&event, &jobs); err != nil || event != "test" || jobs != 1 {
		t.Fatalf("the test message is not queued: %q %d %v", event, jobs, err)
	}
	if code, _ := c.do("DELETE", id, "not-the-token", ""); code != http.StatusNotFound {
		t.Errorf("DELETE with a wrong token: %d, want 404", code)
	}
	if code, _ := c.do("DELETE", id, token, ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", code)
	}
	if code, _ := c.do("GET", id, token, ""); code != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d, want 404", code)
	}
	if code, doc := c.do("GET", "/api/v1/openapi.json", "", ""); code != 200 || doc["paths"].(map[string]any)["/api/v1/subscriptions/{id}/test"] == nil {
		t.Errorf("the OpenAPI document lacks the subscription operations: %d", code)
	}

	// The read-only user reads no URL or secret, and writes nothing else.
	conn, err := pgx.Connect(ctx, pg.ConnString(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	roCfg := pg
	roCfg.User, roCfg.Password = ro, "ro-secret"
	roConn, err := pgx.Connect(ctx, roCfg.ConnString(""))
	if err != nil {
		t.Fatal(err)
	}
	defer roConn.Close(ctx)
	for _, q := range []string{
		`SELECT url FROM alert_subscriptions`,
		`SELECT secret FROM alert_subscriptions`,
		`UPDATE alert_subscriptions SET rules = '[]'`,
		`DELETE FROM alert_outbox`,
		`UPDATE river_job SET state = 'available'`,
		`DELETE FROM alert_state`,
	} {
		_, err := roConn.Exec(ctx, q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as the read-only user: %v, want permission denied", q, err)
		}
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
