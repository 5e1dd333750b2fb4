package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// frozenLedger is a range ledger whose database freezes after answering
// `answer` LastBatch calls: the later ones return only when their context
// ends.
type frozenLedger struct {
	*fakeRangeLedger
	answer, calls int
}

func (s *frozenLedger) LastBatch(ctx context.Context) (coordinator.LastBatch, error) {
	if s.calls++; s.calls <= s.answer {
		return s.fakeRangeLedger.LastBatch(ctx)
	}
	<-ctx.Done()
	return coordinator.LastBatch{}, ctx.Err()
}

// TestCatchUpReadsOfTheLatestBatchHaveADeadline: both reads of the latest
// batch in catch-up mode — the one that sizes the next range and the one
// that starts a range's attempt — run under the database step's deadline
// (POSTGRES_STATEMENT_TIMEOUT), so a frozen database fails them after it
// instead of stalling the loop (without the deadline, the reads would
// block for ever and synctest would report the deadlock).
func TestCatchUpReadsOfTheLatestBatchHaveADeadline(t *testing.T) {
	const timeout = 30 * time.Second
	const wantErr = "reading the latest batch: timeout: no answer within POSTGRES_STATEMENT_TIMEOUT=30s: context deadline exceeded"

	t.Run("sizing the range", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b, rl := catchUpSetup(t)
			b.eng.DBTimeout = timeout
			b.eng.Ledger = &frozenLedger{fakeRangeLedger: rl}
			began := time.Now()
			err := b.eng.Run(t.Context(), 10)
			if err == nil || err.Error() != wantErr {
				t.Fatalf("Run: %v, want %q", err, wantErr)
			}
			if took := time.Since(began); took != timeout {
				t.Errorf("failed after %v, want %v", took, timeout)
			}
			if len(rl.ranges) != 0 {
				t.Errorf("committed ranges %v, want none", rl.ranges)
			}
		})
	})

	t.Run("starting the range", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b, rl := catchUpSetup(t)
			b.eng.DBTimeout = timeout
			// The sizing read answers (10 windows behind), then the
			// database freezes: every attempt at the range times out, and
			// is retried after 5 s, 10 s and 12 s.
			b.eng.Ledger = &frozenLedger{fakeRangeLedger: rl, answer: 1}
			began := time.Now()
			err := b.eng.Run(t.Context(), 10)
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("Run: %v, want an error saying %q", err, wantErr)
			}
			if took, want := time.Since(began), 4*timeout+(5+10+12)*time.Second; took != want {
				t.Errorf("failed after %v, want %v", took, want)
			}
			if len(b.failures) != 4 {
				t.Fatalf("%d failed attempts, want 4: %+v", len(b.failures), b.failures)
			}
			for i, f := range b.failures {
				if f.Err == nil || !strings.Contains(f.Err.Error(), wantErr) || f.Window != nil || f.Final != (i == 3) {
					t.Errorf("failure %d: %+v, want the timeout, no window, final only the last", i, f)
				}
			}
			if len(rl.ranges) != 0 {
				t.Errorf("committed ranges %v, want none", rl.ranges)
			}
		})
	})
}
