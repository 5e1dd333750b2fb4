package rescore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// VerifyOptions shape a re-verification.
type VerifyOptions struct {
	MiniBatches int                // MINI_BATCH_NUMBER
	Retries     int                // RETRY_COUNT
	Retry       retrypolicy.Policy // coordinator.DefaultRetry in the binary
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
		attempt := 0
		_, err := backoff.Retry(ctx, func() (struct{}, error) {
			attempt++
			began := time.Now()
			if err := l.Verify(ctx, w, w.Split(o.MiniBatches)); err != nil {
				if ctx.Err() != nil {
					return struct{}{}, backoff.Permanent(ctx.Err())
				}
				return struct{}{}, err
			}
			log.Info("window re-verified", "window_start", w.Start, "window_end", w.End, "seconds", time.Since(began).Seconds(),
				"window", i+1, "windows", len(windows))
			return struct{}{}, nil
		},
			backoff.WithBackOff(o.Retry.BackOff()),
			backoff.WithMaxTries(uint(max(o.Retries, 0)+1)),
			backoff.WithMaxElapsedTime(0),
			backoff.WithNotify(func(err error, next time.Duration) {
				log.Error("re-verification failed; retrying", "window_start", w.Start, "window_end", w.End, "attempt", attempt,
					"retry_in", next, "error", err)
			}))
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return fmt.Errorf("re-verifying %s - %s: giving up after %d attempts: %w", w.Start.Format(time.DateTime), w.End.Format(time.DateTime), attempt, err)
		}
	}
	return nil
}

// CheckVerified fails, naming the first window concerned, when the
// verifiers left more than maxPercent (MAX_UNVERIFIED_PERCENT) of a
// window's submissions unverified: re-scoring them would take a point from
// every producer the verifier skipped, as the loop refuses to.
func CheckVerified(counts []postgres.Verification, maxPercent float64) error {
	for _, v := range counts {
		if v.Unverified > 0 && float64(v.Unverified)*100 > maxPercent*float64(v.Total) {
			return fmt.Errorf("re-verifying %s - %s: %w", v.Window.Start.UTC().Format(time.DateTime), v.Window.End.UTC().Format(time.DateTime),
				&coordinator.UnverifiedError{Unverified: v.Unverified, Total: v.Total, MaxPercent: maxPercent})
		}
	}
	return nil
}

// Count counts subs and those unverified, for CheckVerified.
func Count(w coordinator.Window, subs []coordinator.Submission) postgres.Verification {
	v := postgres.Verification{Window: w, Total: len(subs)}
	for i := range subs {
		if subs[i].Verified == nil {
			v.Unverified++
		}
	}
	return v
}
