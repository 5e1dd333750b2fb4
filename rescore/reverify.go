package rescore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// VerifyOptions shape a re-verification.
type VerifyOptions struct {
	MiniBatches int           // MINI_BATCH_NUMBER
	Retries     int           // RETRY_COUNT
	Backoff     time.Duration // first retry delay, doubled each retry
	MaxBackoff  time.Duration
	Logger      *slog.Logger
}

// VerifyWindows has l (the loop's launcher, process or Kubernetes mode)
// verify each window in order, cut into mini-batches and retried with
// backoff exactly as the loop does; a window that still fails after its
// retries stops the run with its error.
func VerifyWindows(ctx context.Context, l coordinator.Launcher, windows []coordinator.Window, o VerifyOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	for i, w := range windows {
		delay := o.Backoff
		for attempt := 0; ; attempt++ {
			began := time.Now()
			err := l.Verify(ctx, w, w.Split(o.MiniBatches))
			if err == nil {
				log.Info("window re-verified", "window_start", w.Start, "window_end", w.End, "seconds", time.Since(began).Seconds(),
					"window", i+1, "windows", len(windows))
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt >= o.Retries {
				return fmt.Errorf("re-verifying %s - %s: giving up after %d attempts: %w", w.Start.Format(time.DateTime), w.End.Format(time.DateTime), attempt+1, err)
			}
			log.Error("re-verification failed; retrying", "window_start", w.Start, "window_end", w.End, "attempt", attempt+1,
				"retry_in", delay, "error", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay = min(delay*2, max(o.MaxBackoff, o.Backoff))
		}
	}
	return nil
}
