package pgtest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// InsertSubmissions stores submissions as the collector does (COPY into the
// submissions table). Tests, benchmarks and the demo use it to stand in for
// the collector; the coordinator itself never writes submissions this way.
func InsertSubmissions(ctx context.Context, pool *pgxpool.Pool, subs []coordinator.Submission) (int64, error) {
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"submissions"},
		[]string{"submitted_at_date", "submitted_at", "submitter", "created_at", "block_hash", "remote_addr", "peer_id",
			"snark_work", "graphql_control_port", "built_with_commit_sha", "state_hash", "parent", "height", "slot",
			"validation_error", "verified"},
		pgx.CopyFromSlice(len(subs), func(i int) ([]any, error) {
			s := subs[i]
			var height, slot *int32
			if s.Height != nil {
				h := int32(*s.Height)
				height = &h
			}
			if s.Slot != nil {
				v := int32(*s.Slot)
				slot = &v
			}
			var created *time.Time
			if s.CreatedAt != nil {
				c := s.CreatedAt.UTC()
				created = &c
			}
			return []any{s.SubmittedAtDate, s.SubmittedAt.UTC(), s.Submitter, created, s.BlockHash, s.RemoteAddr, s.PeerID,
				s.SnarkWork, s.GraphQLControlPort, s.BuiltWithCommitSHA, s.StateHash, s.Parent, height, slot,
				s.ValidationError, s.Verified}, nil
		}))
	if err != nil {
		return n, fmt.Errorf("inserting submissions: %w", err)
	}
	return n, nil
}
