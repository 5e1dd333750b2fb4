//go:build !nokubernetes

package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
	kubeworker "github.com/delegation-program/uptime-coordinator/workers/kubernetes"
)

// newKubernetesLauncher runs verifiers as Kubernetes Jobs. It is the only
// use of client-go: a build with -tags nokubernetes leaves it out (see
// kubernetes_off.go).
func newKubernetesLauncher(ctx context.Context, cfg *config.Config, log *slog.Logger, events workers.Events) (coordinator.Launcher, error) {
	cs, ns, err := kubeworker.Client(cfg.Kubernetes)
	if err != nil {
		return nil, fmt.Errorf("WORKER_MODE=kubernetes: %w", err)
	}
	log.Info("verifiers run as Kubernetes Jobs", "namespace", ns)
	l := kubeworker.New(cfg.WorkerOptions(), cfg.Kubernetes, cs, ns, log, kubeworker.WithEvents(events))
	if err := l.Preflight(ctx); err != nil {
		return nil, fmt.Errorf("WORKER_MODE=kubernetes: %w", err)
	}
	return l, nil
}
