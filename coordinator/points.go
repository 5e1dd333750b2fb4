package coordinator

import (
	"fmt"
	"time"
)

// FileName is the points.file_name of a submission, as the original builds
// it: submitted_at as "YYYY-MM-DD HH:MM:SS" with ".ffffff" only when the
// microseconds are not zero, a dash, and the submitter.
func FileName(s *Submission) string {
	ts := s.SubmittedAt.UTC()
	name := ts.Format(time.DateTime)
	if us := ts.Nanosecond() / 1000; us != 0 {
		name += fmt.Sprintf(".%06d", us)
	}
	return name + "-" + s.Submitter
}

// BlockchainEpoch is the points.blockchain_epoch of a submission: its
// created_at in milliseconds since the Unix epoch, or nil when unknown.
func BlockchainEpoch(s *Submission) *int64 {
	if s.CreatedAt == nil {
		return nil
	}
	ms := s.CreatedAt.UnixMilli()
	return &ms
}
