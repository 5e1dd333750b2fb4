package coordinator_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// fakeRangeLedger is a fakeLedger that also commits ranges, recording
// their sizes.
type fakeRangeLedger struct {
	*fakeLedger
	mu     sync.Mutex
	ranges []int
	// reads, when set, counts the source's reads; readsAtCommit is its
	// value at each commit, once every other goroutine is blocked.
	reads         *atomic.Int32
	readsAtCommit []int32
}

func (s *fakeRangeLedger) CommitRange(ctx context.Context, last coordinator.LastBatch, build func([]coordinator.ShortlistedHash) ([]*coordinator.Record, error)) (coordinator.RangeCommitted, error) {
	s.fakeLedger.mu.Lock()
	defer s.fakeLedger.mu.Unlock()
	if last != s.last {
		return coordinator.RangeCommitted{}, coordinator.ErrConcurrentBatch
	}
	if s.reads != nil {
		synctest.Wait()
		s.readsAtCommit = append(s.readsAtCommit, s.reads.Load())
	}
	recs, err := build(s.prev)
	if err != nil {
		return coordinator.RangeCommitted{}, err
	}
	var out coordinator.RangeCommitted
	for _, rec := range recs {
		s.records = append(s.records, rec)
		s.prev = rec.Result.Shortlist
		s.last = coordinator.LastBatch{ID: s.last.ID + 1, End: rec.Window.End}
		out.BotLogIDs = append(out.BotLogIDs, s.last.ID)
	}
	s.mu.Lock()
	s.ranges = append(s.ranges, len(recs))
	s.mu.Unlock()
	return out, nil
}

// catchUpSetup is setup with a range ledger, 10 windows behind, catching
// up in ranges of up to 4 windows when more than 1 is closed.
func catchUpSetup(t *testing.T) (*bundle, *fakeRangeLedger) {
	b := setup(t, at("-202m"))
	rl := &fakeRangeLedger{fakeLedger: b.ledger}
	b.eng.Ledger = rl
	b.eng.CatchUpAfter, b.eng.CatchUpChunk = 1, 4
	return b, rl
}

// countingSource counts reads.
type countingSource struct {
	*fakeSource
	n *atomic.Int32
}

func (s countingSource) Submissions(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	s.n.Add(1)
	return s.fakeSource.Submissions(ctx, w)
}

// TestCatchUpReadsTheNextRangeAhead: without a launcher, the next range's
// submissions are read while a range commits, once per range, and never
// past the batches Run was asked for.
func TestCatchUpReadsTheNextRangeAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, rl := catchUpSetup(t)
		b.eng.Launcher = nil
		rl.reads = &atomic.Int32{}
		b.eng.Source = countingSource{b.source, rl.reads}
		b.source.subs = []coordinator.Submission{{SubmittedAt: at("-200m"), Submitter: "B62a"}, {SubmittedAt: at("-100m"), Submitter: "B62b"}}
		if err := b.eng.Run(t.Context(), 10); err != nil {
			t.Fatal(err)
		}
		if want := []int{4, 4, 2}; !slices.Equal(rl.ranges, want) {
			t.Errorf("ranges %v, want %v", rl.ranges, want)
		}
		want := []coordinator.Window{window("-202m", "-122m"), window("-122m", "-42m"), window("-42m", "-2m")}
		if !slices.Equal(b.source.got, want) {
			t.Errorf("read %v, want %v", b.source.got, want)
		}
		// While a range commits, the next one is read already.
		if want := []int32{2, 3, 3}; !slices.Equal(rl.readsAtCommit, want) {
			t.Errorf("reads done at each commit %v, want %v", rl.readsAtCommit, want)
		}
		// Each submission is scored in its own window only.
		var withSubs []coordinator.Window
		for _, r := range rl.records {
			if r.Submitters > 0 {
				withSubs = append(withSubs, r.Window)
			}
		}
		if want := []coordinator.Window{window("-202m", "-182m"), window("-102m", "-82m")}; !slices.Equal(withSubs, want) {
			t.Errorf("windows with submissions %v, want %v", withSubs, want)
		}
	})
}

// TestCatchUpCommitsWhatIsVerifiedWithinAnInterval: when verifying takes
// minutes a window, a range commits the windows verified within one
// interval instead of waiting for the whole range.
func TestCatchUpCommitsWhatIsVerifiedWithinAnInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, rl := catchUpSetup(t)
		b.launcher.took = 8 * time.Minute
		if err := b.eng.Run(t.Context(), 8); err != nil {
			t.Fatal(err)
		}
		// Ranges of 4 windows: 8 + 8 + 8 minutes pass one interval at the
		// third window, which ends the range; the last 2 fit in one.
		if want := []int{3, 3, 2}; !slices.Equal(rl.ranges, want) {
			t.Errorf("ranges %v, want %v", rl.ranges, want)
		}
		if got := b.launcher.times(); len(got) != 8 || !got[7].Equal(at("56m")) {
			t.Errorf("verified at %v, want 8 times, the last at 56m", got)
		}
		if want := []coordinator.Window{window("-202m", "-142m"), window("-142m", "-82m"), window("-82m", "-42m")}; !slices.Equal(b.source.got, want) {
			t.Errorf("read %v, want %v", b.source.got, want)
		}
	})
}
