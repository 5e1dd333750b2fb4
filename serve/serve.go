// Package serve assembles `coordinator serve`: the read API, the batch
// stream and the web pages on one standard library mux.
package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/subapi"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/api"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/web"
)

// Handler returns the whole site: the JSON API under /api/v1, the legacy
// /uptimescore/ endpoint, the stream and the pages. more registers further
// API operations (alert subscriptions) in the same huma API.
func Handler(reader *api.Reader, hub *api.Hub, logger *slog.Logger, heartbeat time.Duration, more ...api.Registrar) http.Handler {
	mux := http.NewServeMux()
	srv := &api.Server{Reader: reader, Hub: hub, Logger: logger, Heartbeat: heartbeat}
	srv.Register(api.NewAPI(mux), more...)
	(&web.Pages{Reader: reader, Logger: logger}).Register(mux)
	return api.Handler(mux)
}

// subscriptionAPI builds the alert subscription endpoints: they write the
// subscription tables (create-ro-user grants that much to the read-only
// user) and queue test messages for the coordinator's run to deliver.
func subscriptionAPI(pool *pgxpool.Pool, cfg *config.Serve, log *slog.Logger) (*subapi.Handlers, error) {
	q, err := queue.New(pool, false, queue.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return &subapi.Handlers{Logger: log, Service: &subscriptions.Service{Pool: pool, Queue: q, AdminToken: cfg.AdminAPIToken,
		Policy: outbound.Policy{AllowPrivate: cfg.AlertAllowPrivateNetworks}}}, nil
}

// Run is `coordinator serve`: it reads with cfg's read connection, follows
// the batches on a LISTEN connection and serves on cfg.Addr until ctx ends,
// then shuts down (stream clients are closed, in-flight requests finish).
func Run(ctx context.Context, cfg *config.Serve, log *slog.Logger, ready func(addr string)) error {
	conn := cfg.ReadConnString()
	pool, err := postgres.Open(ctx, conn)
	if err != nil {
		return err
	}
	defer pool.Close()
	reader := &api.Reader{Pool: pool, UptimeDays: cfg.UptimeDays, Logger: log}
	m := newMetrics()
	hub := &api.Hub{ConnString: conn, Reader: reader, Logger: log}
	warm := make(chan struct{}, 1)
	hub.OnBatch = func(context.Context, api.Batch) {
		m.batches.Inc()
		select {
		case warm <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = hub.Run(ctx) })
	// The points are loaded at start, and the leaderboards of the standard
	// windows computed once a batch lands, off the request path.
	wg.Go(func() { reader.WarmLoop(ctx, warm) })
	m.clients = hub.Clients

	subs, err := subscriptionAPI(pool, cfg, log)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", Handler(reader, hub, log, 0, subs.Register))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		pctx, pcancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer pcancel()
		var problems []string
		if err := pool.Ping(pctx); err != nil {
			problems = append(problems, "database: "+err.Error())
		}
		select {
		case <-hub.Ready():
		default:
			problems = append(problems, "not yet listening for batches")
		}
		if !reader.Loaded() {
			problems = append(problems, "still loading the points")
		}
		if len(problems) > 0 {
			http.Error(w, "not ready: "+strings.Join(problems, "; "), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", m.handler())

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("serve: listening on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           m.instrument(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving the read API", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		cancel()
		wg.Wait()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Stream handlers end with ctx (their base context); then shut down.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	err = srv.Shutdown(sctx)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("serve: shutting down: %w", err)
	}
	log.Info("read API stopped")
	return nil
}
