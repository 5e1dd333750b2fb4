package main

import (
	"context"
	"os"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/internal/buildinfo"
	"github.com/delegation-program/uptime-coordinator/internal/logging"
	"github.com/delegation-program/uptime-coordinator/serve"
)

// ServeCmd is "coordinator serve": the read API, stream and web pages.
type ServeCmd struct{}

// Help is the detail "coordinator serve --help" shows.
func (ServeCmd) Help() string {
	return `Serves, on API_ADDR, the read API (/api/v1/..., OpenAPI document at
/api/v1/openapi.json), the existing leaderboard API's /uptimescore/ endpoint,
the batch stream (/api/v1/stream, Server-Sent Events), the web pages (/) and
its own /healthz, /readyz and /metrics. It only reads: with POSTGRES_RO_USER
set it connects as that user (see create-ro-user), else as POSTGRES_USER.
Run it as a separate process next to "coordinator run".

Examples:

    coordinator serve
    API_ADDR=:8081 coordinator serve`
}

// Run serves until SIGINT or SIGTERM.
func (c *ServeCmd) Run(ctx context.Context, env *Env) error {
	if err := config.LoadDotEnv(""); err != nil {
		return err
	}
	cfg, err := config.LoadServe(os.LookupEnv)
	if err != nil {
		return err
	}
	log := logging.New(env.Stdout, cfg.Log)
	log.Info("coordinator serve starting", "version", buildinfo.Get().Short(), "config", cfg)
	return serve.Run(ctx, cfg, log, nil)
}
