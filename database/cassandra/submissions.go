package cassandra

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// columns are read in this order by scan: what scoring and the copy into
// Postgres need, the original coordinator's 15 columns. snark_work (which
// the verifier nulls, and the original stopped reading) and raw_block are
// never read.
var columns = []string{
	"submitted_at_date", "submitted_at", "submitter", "created_at", "block_hash",
	"remote_addr", "peer_id", "graphql_control_port", "built_with_commit_sha",
	"state_hash", "parent", "height", "slot", "validation_error", "verified",
}

// No ORDER BY: Cassandra refuses to page a query that orders across an IN on
// the partition key, so rows are sorted after reading.
const selectWhere = " WHERE submitted_at_date IN ? AND shard IN ? AND submitted_at >= ? AND submitted_at < ?"

const updateSet = " SET state_hash = ?, parent = ?, height = ?, slot = ?, validation_error = ?, verified = ?" +
	" WHERE submitted_at_date = ? AND shard = ? AND submitted_at = ? AND submitter = ?"

// updateConcurrency bounds the updates UpdateVerification has in flight.
const updateConcurrency = 16

var _ coordinator.SubmissionSource = (*Store)(nil)

// Submissions returns every submission with SubmittedAt in [w.Start,
// w.End), sorted by SubmittedAt, then Submitter.
func (s *Store) Submissions(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	var subs []coordinator.Submission
	for _, q := range plan(w) {
		var err error
		if subs, err = s.read(ctx, q, subs); err != nil {
			return nil, fmt.Errorf("cassandra: reading submissions of %d date(s) from %s, shards %d-%d: %w",
				len(q.dates), q.dates[0], q.shards[0], q.shards[len(q.shards)-1], err)
		}
	}
	slices.SortFunc(subs, func(a, b coordinator.Submission) int {
		return cmp.Or(a.SubmittedAt.Compare(b.SubmittedAt), cmp.Compare(a.Submitter, b.Submitter))
	})
	return subs, nil
}

// read appends the rows of one statement to subs, page by page until the
// paging state is empty. Pages may be empty (Keyspaces returns some).
func (s *Store) read(ctx context.Context, q query, subs []coordinator.Submission) ([]coordinator.Submission, error) {
	var state []byte
	for {
		iter := s.session.Query(s.selectQuery, q.dates, q.shards, q.from, q.to).
			WithContext(ctx).
			Idempotent(true).
			PageSize(s.pageSize).
			PageState(state). // also turns gocql's own paging off
			Iter()
		next := iter.PageState()
		scanner := iter.Scanner()
		for scanner.Next() {
			sub, err := scan(scanner)
			if err != nil {
				return nil, errors.Join(err, scanner.Err())
			}
			subs = append(subs, sub)
		}
		if err := scanner.Err(); err != nil {
			return nil, err
		}
		if len(next) == 0 {
			return subs, nil
		}
		state = next
	}
}

// scan reads one row in the order of columns. NULLs become nil pointers.
func scan(sc gocql.Scanner) (coordinator.Submission, error) {
	var (
		sub  coordinator.Submission
		date string
	)
	err := sc.Scan(&date, &sub.SubmittedAt, &sub.Submitter, &sub.CreatedAt, &sub.BlockHash,
		&sub.RemoteAddr, &sub.PeerID, &sub.GraphQLControlPort, &sub.BuiltWithCommitSHA,
		&sub.StateHash, &sub.Parent, &sub.Height, &sub.Slot, &sub.ValidationError, &sub.Verified)
	if err != nil {
		return sub, fmt.Errorf("scanning a row: %w", err)
	}
	if sub.SubmittedAtDate, err = time.Parse(DateLayout, date); err != nil {
		return sub, fmt.Errorf("row of %s at %s: submitted_at_date: %w", sub.Submitter, sub.SubmittedAt, err)
	}
	sub.SubmittedAt = sub.SubmittedAt.UTC()
	if sub.CreatedAt != nil {
		t := sub.CreatedAt.UTC()
		sub.CreatedAt = &t
	}
	return sub, nil
}

// UpdateVerification writes the verifier's columns (state_hash, parent,
// height, slot, validation_error, verified) of each submission to its row,
// found by the full primary key: SubmittedAtDate (or, when zero, the date of
// SubmittedAt), the shard of SubmittedAt, SubmittedAt and Submitter. Nil
// pointers write NULL. Like every CQL UPDATE it creates a row that is
// missing.
func (s *Store) UpdateVerification(ctx context.Context, subs []coordinator.Submission) error {
	for i := range subs {
		if subs[i].Submitter == "" || subs[i].SubmittedAt.IsZero() {
			return fmt.Errorf("cassandra: update %d: submitter and submitted_at are required", i)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(updateConcurrency)
	for i := range subs {
		sub := &subs[i]
		g.Go(func() error {
			date := PartitionDate(sub.SubmittedAt)
			if !sub.SubmittedAtDate.IsZero() {
				date = sub.SubmittedAtDate.Format(DateLayout)
			}
			err := s.session.Query(s.updateQuery,
				sub.StateHash, sub.Parent, sub.Height, sub.Slot, sub.ValidationError, sub.Verified,
				date, Shard(sub.SubmittedAt), sub.SubmittedAt, sub.Submitter).
				WithContext(ctx).Idempotent(true).
				Consistency(gocql.LocalQuorum). // the only write consistency Keyspaces accepts
				Exec()
			if err != nil {
				return fmt.Errorf("cassandra: updating the submission of %s at %s: %w",
					sub.Submitter, sub.SubmittedAt.UTC().Format(time.RFC3339Nano), err)
			}
			return nil
		})
	}
	return g.Wait()
}
