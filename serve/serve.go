// Package serve assembles `coordinator serve`: the read API, the batch
// stream and the web pages on one standard library mux.
package serve

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/delegation-program/uptime-coordinator/api"
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
