// Package apitest seeds a real database by running the real engine over a
// synthetic network and starts the read API on it, for the tests of the API
// and of the web pages.
package apitest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
	"github.com/delegation-program/uptime-coordinator/serve"
)

// The test network: 2-hour batches, a 2-day scoring window, up to 40
// batches of submissions, so the 24h window, the default 2d window and 7d
// all differ.
const (
	Interval   = 2 * time.Hour
	UptimeDays = 2
	Producers  = 120
)

// Start is the start of the first batch.
var Start = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// Seeded is a database scored by the real engine.
type Seeded struct {
	Cfg    config.Postgres
	Pool   *pgxpool.Pool
	Net    *synthnet.Network
	Engine *coordinator.Engine
}

// Seed scores the synthetic network's first batches with the engine, as the
// coordinator would; Next runs more.
func Seed(t testing.TB, batches int) *Seeded {
	t.Helper()
	net := synthnet.Generate(synthnet.Params{Seed: 11, Producers: Producers, Start: Start, Duration: 40 * Interval, DepartShare: 0.05, Fates: true})
	cfg, pool := pgtest.Seed(t, net.Verified(), Start)
	store := &postgres.Database{Pool: pool, BulkPoints: true}
	s := &Seeded{Cfg: cfg, Pool: pool, Net: net, Engine: &coordinator.Engine{Ledger: store, Source: store, Interval: Interval,
		MiniBatches: 1, UptimeDays: UptimeDays, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	s.Next(t, batches)
	return s
}

// Next runs n more batches through the engine and returns their bot_log ids.
func (s *Seeded) Next(t testing.TB, n int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		sum, err := s.Engine.RunBatch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sum.Committed.BotLogID)
	}
	return ids
}

// Serve starts the whole site (API, stream, pages) on the database, reading
// through pool, with the stream hub listening on cfg.
func Serve(t testing.TB, cfg config.Postgres, pool *pgxpool.Pool) (*httptest.Server, *api.Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reader := &api.Reader{Pool: pool, UptimeDays: UptimeDays}
	hub := &api.Hub{ConnString: cfg.ConnString(""), Reader: reader, Logger: logger}
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	ts := httptest.NewServer(serve.Handler(reader, hub, logger, 200*time.Millisecond))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		cancel()
		<-done
	})
	select {
	case <-hub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the stream hub did not start listening")
	}
	return ts, hub
}
