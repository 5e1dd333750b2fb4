// Package coordinator holds the batch engine of the uptime validator
// coordinator: the survey loop, the consensus scoring and the interfaces the
// storage and worker adapters implement. Everything in this package except
// the loop itself is pure and free of I/O.
package coordinator

import (
	"context"
	"time"
)

// Submission is one uptime submission as the collector stores it, with the
// verification columns a verifier fills in. Nullable columns are pointers so
// that a copy between stores keeps NULL distinct from empty.
type Submission struct {
	SubmittedAtDate    time.Time // the UTC date of SubmittedAt (DATE column)
	SubmittedAt        time.Time // UTC
	Submitter          string
	CreatedAt          *time.Time // UTC
	BlockHash          *string
	RemoteAddr         *string
	PeerID             *string
	SnarkWork          []byte
	GraphQLControlPort *int32
	BuiltWithCommitSHA *string

	// Filled by the verifier.
	StateHash       *string
	Parent          *string
	Height          *int64
	Slot            *int64
	ValidationError *string
	Verified        *bool
}

// Window is a half-open time interval [Start, End).
type Window struct {
	Start time.Time
	End   time.Time
}

// Split cuts the window into n equal half-open parts. The last part always
// ends exactly at w.End, so the parts cover the window without gaps.
func (w Window) Split(n int) []Window {
	if n < 1 {
		n = 1
	}
	d := w.End.Sub(w.Start) / time.Duration(n)
	parts := make([]Window, n)
	for i := range parts {
		parts[i] = Window{Start: w.Start.Add(d * time.Duration(i)), End: w.Start.Add(d * time.Duration(i+1))}
	}
	parts[n-1].End = w.End
	return parts
}

// SubmissionSource reads the submissions of a window from the collector's
// store (Postgres or Cassandra / AWS Keyspaces).
type SubmissionSource interface {
	// Submissions returns every submission with SubmittedAt in [w.Start, w.End).
	Submissions(ctx context.Context, w Window) ([]Submission, error)
}

// Launcher has the submissions of a batch verified: it launches the
// stateless verifier (the bundled tool, coordinator verify, or the
// original's image) over each mini-batch as a worker — a local process or a
// Kubernetes Job — and returns once every mini-batch is verified, or with an
// error when one failed. It is named for what the engine asks of it; "the
// verifier" is the tool the workers run.
type Launcher interface {
	Verify(ctx context.Context, batch Window, parts []Window) error
}
