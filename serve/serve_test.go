package serve_test

import (
	"context"
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

	"github.com/delegation-program/uptime-coordinator/api/apitest"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/serve"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestServeReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := apitest.Seed(t, 3)
	if _, err := postgres.CreateROUser(ctx, s.Pool, s.Cfg.DB, "serve_ro_"+s.Cfg.DB, "ro-secret"); err != nil {
		t.Fatal(err)
	}
	pg := s.Cfg
	pg.ROUser, pg.ROPassword = "serve_ro_"+s.Cfg.DB, "ro-secret"
	cfg := &config.Serve{Postgres: pg, UptimeDays: apitest.UptimeDays, Addr: "127.0.0.1:0"}

	sctx, stop := context.WithCancel(ctx)
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(sctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a string) { addrc <- a })
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	code, body := get("/readyz")
	for code != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		code, body = get("/readyz")
	}
	if code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/api/v1/leaderboard"); code != 200 || !strings.Contains(body, `"surveys":3`) {
		t.Errorf("leaderboard as the read-only user: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "uptime_coordinator_serve_stream_clients") ||
		!strings.Contains(body, `uptime_coordinator_serve_http_requests_total{code="200"}`) {
		t.Errorf("/metrics: %d %s", code, body)
	}

	// serve reads as the read-only user...
	var users []string
	rows, err := s.Pool.Query(ctx, `SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, s.Cfg.DB)
	if err != nil {
		t.Fatal(err)
	}
	users, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range users {
		found = found || u == pg.ROUser
	}
	if !found {
		t.Errorf("sessions on the database belong to %v, none to %s", users, pg.ROUser)
	}
	// ... which cannot write.
	conn, err := pgx.Connect(ctx, cfg.ReadConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`UPDATE nodes SET score = 0`,
		`INSERT INTO bot_logs (files_processed, batch_start_epoch, batch_end_epoch) VALUES (1, 1, 2)`,
		`DELETE FROM score_history`,
		`CREATE TABLE serve_was_here (x int)`,
	} {
		_, err := conn.Exec(ctx, q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as the read-only user: %v, want permission denied (42501)", q, err)
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v on shutdown", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("serve did not stop")
	}
}
