package rescore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
	"github.com/delegation-program/uptime-coordinator/rescore"
)

// flaky fails its first failures calls, and records when each call came.
type flaky struct {
	failures int
	calls    []time.Time
	parts    []int
}

func (f *flaky) Verify(_ context.Context, _ coordinator.Window, parts []coordinator.Window) error {
	f.calls = append(f.calls, time.Now())
	f.parts = append(f.parts, len(parts))
	if len(f.calls) <= f.failures {
		return errors.New("verifier crashed")
	}
	return nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestVerifyWindowsRetriesWithDoublingDelays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		l := &flaky{failures: 3}
		w := coordinator.Window{Start: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 6, 1, 0, 20, 0, 0, time.UTC)}
		err := rescore.VerifyWindows(t.Context(), l, []coordinator.Window{w}, rescore.VerifyOptions{MiniBatches: 4, Retries: 3,
			Retry: retrypolicy.Policy{First: 5 * time.Second, Max: 8 * time.Second}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		// Waits of 5 s, 10 s capped at 8 s, 8 s.
		want := []time.Duration{0, 5 * time.Second, 13 * time.Second, 21 * time.Second}
		if len(l.calls) != len(want) {
			t.Fatalf("%d calls, want %d", len(l.calls), len(want))
		}
		for i, d := range want {
			if got := l.calls[i].Sub(t0); got != d {
				t.Errorf("call %d at +%v, want +%v", i+1, got, d)
			}
			if l.parts[i] != 4 {
				t.Errorf("call %d with %d mini-batches, want 4", i+1, l.parts[i])
			}
		}
	})
}

func TestVerifyWindowsGivesUpAfterRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &flaky{failures: 100}
		w1 := coordinator.Window{Start: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 6, 1, 0, 20, 0, 0, time.UTC)}
		w2 := coordinator.Window{Start: w1.End, End: w1.End.Add(20 * time.Minute)}
		err := rescore.VerifyWindows(t.Context(), l, []coordinator.Window{w1, w2}, rescore.VerifyOptions{MiniBatches: 1, Retries: 2,
			Retry: retrypolicy.Policy{First: time.Second, Max: time.Minute}, Logger: quiet})
		want := "re-verifying 2024-06-01 00:00:00 - 2024-06-01 00:20:00: giving up after 3 attempts: verifier crashed"
		if err == nil || err.Error() != want {
			t.Fatalf("error %v, want %q", err, want)
		}
		if len(l.calls) != 3 {
			t.Errorf("%d calls, want 3 (the second window is never tried)", len(l.calls))
		}
	})
}

func TestVerifyWindowsStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		l := &flaky{failures: 100}
		w := coordinator.Window{Start: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 6, 1, 0, 20, 0, 0, time.UTC)}
		t0 := time.Now()
		time.AfterFunc(90*time.Second, cancel)
		err := rescore.VerifyWindows(ctx, l, []coordinator.Window{w}, rescore.VerifyOptions{MiniBatches: 1, Retries: 10,
			Retry: retrypolicy.Policy{First: time.Minute, Max: time.Hour}, Logger: quiet})
		if !errors.Is(err, context.Canceled) || time.Since(t0) != 90*time.Second || len(l.calls) != 2 {
			t.Errorf("error %v after %v and %d calls; want context.Canceled at +1m30s after 2 calls", err, time.Since(t0), len(l.calls))
		}
	})
}
