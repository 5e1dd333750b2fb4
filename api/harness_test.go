package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The test network: 2-hour batches, a 2-day scoring window, 3 days of
// submissions, so the 24h window, the default 2d window and 7d all differ.
const (
	interval   = 2 * time.Hour
	uptimeDays = 2
	producers  = 120
)

var netStart = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// seeded is a database scored by the real engine.
type seeded struct {
	cfg    config.Postgres
	pool   *pgxpool.Pool
	net    *synthnet.Network
	engine *coordinator.Engine
}

// seed scores the synthetic network's first batches with the engine, as
// the coordinator would; more batches can be run with next.
func seed(t *testing.T, batches int) *seeded {
	t.Helper()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, cfg)
	net := synthnet.Generate(synthnet.Params{Seed: 11, Producers: producers, Start: netStart, Duration: 40 * interval, DepartShare: 0.05})
	if _, err := postgres.InsertSubmissions(ctx, pool, net.Verified()); err != nil {
		t.Fatal(err)
	}
	if err := postgres.InitDatabase(ctx, pool, netStart, false); err != nil {
		t.Fatal(err)
	}
	store := &postgres.Store{Pool: pool, BulkPoints: true}
	s := &seeded{cfg: cfg, pool: pool, net: net, engine: &coordinator.Engine{Store: store, Source: store, Interval: interval,
		MiniBatches: 1, UptimeDays: uptimeDays, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	s.next(t, batches)
	return s
}

// next runs n more batches through the engine.
func (s *seeded) next(t *testing.T, n int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		sum, err := s.engine.RunBatch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sum.Committed.BotLogID)
	}
	return ids
}

// serve starts the read API (and the stream hub) on the database.
func serve(t *testing.T, cfg config.Postgres, pool *pgxpool.Pool) (*httptest.Server, *api.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reader := &api.Reader{Pool: pool, UptimeDays: uptimeDays}
	hub := &api.Hub{ConnString: cfg.ConnString(""), Reader: reader, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	srv := &api.Server{Reader: reader, Hub: hub, Heartbeat: 200 * time.Millisecond}
	mux := http.NewServeMux()
	srv.Register(api.NewAPI(mux))
	ts := httptest.NewUnstartedServer(api.Handler(mux))
	ts.Config.BaseContext = nil
	ts.Start()
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
	return ts, srv
}
