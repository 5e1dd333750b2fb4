// Package verifier is the stateless verifier bundled with the coordinator
// ("coordinator verify START END"), a stand-in for Mina's
// delegation-verify tool where that tool is not available: tests, the demo,
// and deployments that trust their collector.
//
// For the submissions of a window that are not verified yet, it looks up
// the block each one names in a directory of Mina precomputed blocks in JSON
// (BLOCKS_DIR/<block_hash>.json) and records the block's state hash,
// parent, height and slot with verified = true, or verified = false and a
// validation_error saying why: malformed submitter key or block hash,
// block missing, unreadable or malformed, or a block declaring another
// hash.
//
// It performs NO SNARK verification and no cryptographic check at all: keys
// and hashes are checked for their shape only, and the submission's
// signature and snark_work are not looked at. It is the equivalent of the
// Mina tool run with --no-checks.
//
// It is idempotent: only rows whose verified IS NULL are read and written,
// so re-running a window changes nothing.
package verifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// Store is where the verifier reads submissions and records its verdicts:
// the Postgres store (postgres.Database), or another one through Filter.
type Store interface {
	// Unverified returns the submissions with SubmittedAt in the window
	// whose Verified is nil, with at least Submitter, SubmittedAt and
	// BlockHash.
	Unverified(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error)
	// UpdateVerification records state_hash, parent, height, slot,
	// validation_error and verified of each submission, identified by
	// submitter and submitted_at, in rows not verified yet: a row whose
	// verified is set must be left alone.
	UpdateVerification(ctx context.Context, subs []coordinator.Submission) error
}

// FullStore is a store that reads every submission of a window, complete
// with its block hash, such as the Cassandra one.
type FullStore interface {
	coordinator.SubmissionSource
	UpdateVerification(ctx context.Context, subs []coordinator.Submission) error
}

// Filter adapts a FullStore to Store: Unverified keeps the submissions
// whose Verified is nil.
func Filter(s FullStore) Store { return filtered{s} }

type filtered struct{ FullStore }

func (f filtered) Unverified(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	subs, err := f.Submissions(ctx, w)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(subs, func(s coordinator.Submission) bool { return s.Verified != nil }), nil
}

// Verifier verifies the submissions of a window against a directory of
// precomputed blocks.
type Verifier struct {
	Store     Store
	BlocksDir string
	// MaxBlockBytes caps the size of a block file (0: DefaultMaxBlockBytes).
	MaxBlockBytes int64
	Logger        *slog.Logger // default slog.Default()
}

// Result sums up the verification of a window.
type Result struct {
	Window   coordinator.Window
	Pending  int            // submissions in the window not verified before
	Verified int            // now verified = true
	Invalid  map[string]int // now verified = false, by reason
}

// Rejected returns how many submissions were found invalid.
func (r *Result) Rejected() int {
	n := 0
	for _, v := range r.Invalid {
		n += v
	}
	return n
}

// String is a one-line summary.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "window %s - %s: %d unverified submissions: %d verified, %d invalid",
		workers.FormatTimestamp(r.Window.Start), workers.FormatTimestamp(r.Window.End),
		r.Pending, r.Verified, r.Rejected())
	if len(r.Invalid) > 0 {
		b.WriteString(" (")
		for i, reason := range slices.Sorted(maps.Keys(r.Invalid)) {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s: %d", reason, r.Invalid[reason])
		}
		b.WriteString(")")
	}
	return b.String()
}

func (v *Verifier) log() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}

// Verify verifies the window's unverified submissions and stores the
// verdicts in one set-based write.
func (v *Verifier) Verify(ctx context.Context, w coordinator.Window) (*Result, error) {
	if v.BlocksDir == "" {
		return nil, errors.New("no blocks directory")
	}
	if st, err := os.Stat(v.BlocksDir); err != nil {
		return nil, fmt.Errorf("blocks directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("blocks directory %s is not a directory", v.BlocksDir)
	}
	pending, err := v.Store.Unverified(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("reading the window's submissions: %w", err)
	}
	res := &Result{Window: w, Pending: len(pending), Invalid: map[string]int{}}
	if len(pending) == 0 {
		return res, nil
	}

	blocks, err := v.readBlocks(ctx, pending)
	if err != nil {
		return nil, err
	}
	out := make([]coordinator.Submission, len(pending))
	for i, s := range pending {
		r := rejection(s, blocks)
		out[i] = verdict(s, r, blocks)
		if r == nil {
			res.Verified++
			continue
		}
		res.Invalid[r.Reason]++
		v.log().Debug("submission rejected", "submitter", s.Submitter, "submitted_at", s.SubmittedAt,
			"validation_error", r.Error())
	}
	if err := v.Store.UpdateVerification(ctx, out); err != nil {
		return nil, err
	}
	return res, nil
}

// outcome is the result of reading one block.
type outcome struct {
	block *Block
	err   error // a *Rejection
}

// readBlocks reads, in parallel, each distinct block the well-formed
// submissions name.
func (v *Verifier) readBlocks(ctx context.Context, subs []coordinator.Submission) (map[string]outcome, error) {
	var hashes []string
	seen := map[string]bool{}
	for _, s := range subs {
		if CheckPublicKey(s.Submitter) != nil || s.BlockHash == nil || CheckStateHash(*s.BlockHash) != nil {
			continue
		}
		if h := *s.BlockHash; !seen[h] {
			seen[h] = true
			hashes = append(hashes, h)
		}
	}
	results := make(map[string]outcome, len(hashes))
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(len(hashes), 2*runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for h := range work {
				b, err := ReadBlock(v.BlocksDir, h, v.MaxBlockBytes)
				mu.Lock()
				results[h] = outcome{b, err}
				mu.Unlock()
			}
		})
	}
	var err error
feed:
	for _, h := range hashes {
		select {
		case work <- h:
		case <-ctx.Done():
			err = fmt.Errorf("reading blocks: %w", ctx.Err())
			break feed
		}
	}
	close(work)
	wg.Wait()
	return results, err
}

// rejection returns why s is invalid, or nil.
func rejection(s coordinator.Submission, blocks map[string]outcome) *Rejection {
	if err := CheckPublicKey(s.Submitter); err != nil {
		return asRejection(err)
	}
	if s.BlockHash == nil {
		return &Rejection{Reason: ReasonBadBlockHash, Detail: "none"}
	}
	if err := CheckStateHash(*s.BlockHash); err != nil {
		return asRejection(err)
	}
	o, ok := blocks[*s.BlockHash]
	if !ok {
		return &Rejection{Reason: ReasonBlockUnreadable, Detail: "not read"}
	}
	if o.err != nil {
		return asRejection(o.err)
	}
	return nil
}

func asRejection(err error) *Rejection {
	var r *Rejection
	if errors.As(err, &r) {
		return r
	}
	return &Rejection{Reason: ReasonBlockUnreadable, Detail: err.Error()}
}

// verdict returns s with its verification columns filled in: the block's
// when r is nil, else verified = false and r as the validation error.
func verdict(s coordinator.Submission, r *Rejection, blocks map[string]outcome) coordinator.Submission {
	s.StateHash, s.Parent, s.Height, s.Slot, s.ValidationError = nil, nil, nil, nil, nil
	if r != nil {
		msg := r.Error()
		s.Verified, s.ValidationError = ptr(false), &msg
		return s
	}
	b := blocks[*s.BlockHash].block
	s.StateHash, s.Parent, s.Height, s.Slot = ptr(b.StateHash), ptr(b.Parent), ptr(b.Height), ptr(b.Slot)
	s.Verified = ptr(true)
	return s
}

func ptr[T any](v T) *T { return &v }
