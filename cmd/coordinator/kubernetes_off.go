//go:build nokubernetes

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// newKubernetesLauncher: this build has no Kubernetes client.
func newKubernetesLauncher(context.Context, *config.Config, *slog.Logger, workers.Events) (coordinator.Launcher, error) {
	return nil, errors.New("WORKER_MODE=kubernetes: this binary was built with -tags nokubernetes; use WORKER_MODE=process or none, or the default build")
}
