package coordinator

import (
	"context"
	"errors"
	"slices"
	"time"
)

// LastBatch is the latest bot_logs row: the next batch starts at its end.
type LastBatch struct {
	ID  int64
	End time.Time
}

// ErrNoBatch is returned by Ledger.LastBatch when bot_logs is empty.
var ErrNoBatch = errors.New("bot_logs is empty: initialise the database first (coordinator init-database, or go tool mage initDatabase)")

// ErrConcurrentBatch is returned by Ledger.CommitBatch when the latest batch
// is no longer the one the batch was started from: someone else committed.
var ErrConcurrentBatch = errors.New("the latest batch changed while this batch was being processed (another coordinator on this database?)")

// Record is everything a batch writes, built from its scoring result.
type Record struct {
	Window         Window
	ProcessingTime time.Duration // launch-to-completion time of the verifiers
	Result         *Result
	UptimeDays     int
	// Copy, when not nil, are the batch's submissions (valid or not) to copy
	// into the Postgres submissions table: Cassandra is the primary store.
	Copy []Submission
	// Now is the batch's created_at for points and updated_at for new nodes.
	Now time.Time
	// Submitters is the number of distinct submitters of the window's
	// submissions, valid or not; PrevSubmitters the same for the batch this
	// process committed before (0 when unknown). For the operator alerts.
	Submitters, PrevSubmitters int
	// Evidence, when not nil, is the batch's per-producer evidence, written
	// in the same transaction.
	Evidence *BatchEvidence
}

// FilesProcessed is bot_logs.files_processed: the number of valid submissions.
func (r *Record) FilesProcessed() int { return len(r.Result.Valid) }

// FileTimestamp is bot_logs.file_timestamps: the earliest valid submission
// when some submission earned a point, else the batch end.
func (r *Record) FileTimestamp() time.Time {
	if len(r.Result.Points) > 0 {
		return r.Result.EarliestValid
	}
	return r.Window.End
}

// StateHashes returns every state hash and parent of the valid submissions,
// distinct and sorted: the statehash rows the batch needs.
func (r *Record) StateHashes() []string {
	var out []string
	for _, s := range r.Result.Valid {
		out = append(out, *s.StateHash)
		if s.Parent != nil && *s.Parent != "" {
			out = append(out, *s.Parent)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Producers returns the distinct submitters of the valid submissions, sorted:
// the nodes rows the batch needs.
func (r *Record) Producers() []string {
	out := make([]string, 0, len(r.Result.Valid))
	for _, s := range r.Result.Valid {
		out = append(out, s.Submitter)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Scoreboard describes the scoreboard update of a committed batch.
type Scoreboard struct {
	Surveys     int64 // batches in the scoring window
	Scored      int64 // nodes with a score
	Changed     int64 // nodes whose score or percentage changed
	Incremental bool  // updated by the window's delta rather than recomputed
}

// Committed is what a committed batch reports.
type Committed struct {
	BotLogID   int64
	NewNodes   int64
	Scoreboard Scoreboard
	// PreviousShares are the previous batch's error-class counts, read in
	// the batch's transaction; nil when it has no evidence (or this batch
	// recorded none).
	PreviousShares *ClassShares
	// NotYetKnown, in a catch-up, holds the producers whose nodes rows the
	// range created for a later batch of the same range: batch after batch
	// they would not exist yet, so this batch's steps (alert rules) must
	// not see them. Nil for a batch committed alone.
	NotYetKnown map[string]bool
}

// Ledger is the engine's record of committed batches: bot_logs and, with
// each batch, its points, the scoreboard and score_history. It is called a
// ledger rather than a store because the engine only appends batches to it
// and reads the latest one back; the submissions are read elsewhere
// (SubmissionSource). postgres.Database implements both.
type Ledger interface {
	// LastBatch returns the latest batch, or ErrNoBatch.
	LastBatch(ctx context.Context) (LastBatch, error)
	// CommitBatch writes a batch in one transaction: it checks that last is
	// still the latest batch, reads last's shortlist, calls build with it and
	// writes the record, the scoreboard and the score history. Nothing is
	// written when any step fails.
	CommitBatch(ctx context.Context, last LastBatch, build func(prev []ShortlistedHash) (*Record, error)) (Committed, error)
}

// Checkpoint is called at named points of a batch, between the engine's
// phases and between the statements of the batch transaction. It exists for
// fault-injection tests, which halt the process at a chosen point and kill
// it there; it is nil in the shipped binary (see cmd/coordinator's crashtest
// build). A Checkpoint may block, and must return once ctx is done.
type Checkpoint func(ctx context.Context, name string)

// Reach calls c when it is set.
func (c Checkpoint) Reach(ctx context.Context, name string) {
	if c != nil {
		c(ctx, name)
	}
}
