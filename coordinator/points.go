package coordinator

import (
	"time"
)

// fileNameLayout is the time layout of a batch's points.file_name, the
// original's rule: it converts the batch's whole submitted_at column to text
// at once (pandas), so every name of a batch has the same precision, the
// finest any submission of the frame needs. frame is that column's rows:
// the submissions with verified true and no validation error.
//
//   - every time exactly at midnight: the date alone, "2006-01-02";
//   - else a fraction with 9 digits if any time has nanoseconds, 6 if any
//     has microseconds (not whole milliseconds), 3 if any has milliseconds,
//     none when every fraction is zero.
//
// So Postgres data (microseconds) gives ".433000" next to ".000123" but
// ".433" next to ".000" when every fraction is whole milliseconds, as
// Cassandra data always is.
func fileNameLayout(frame []*Submission) string {
	datesOnly := true
	var ns, us, ms bool
	for _, s := range frame {
		t := s.SubmittedAt.UTC()
		f := t.Nanosecond()
		if f != 0 || t.Hour() != 0 || t.Minute() != 0 || t.Second() != 0 {
			datesOnly = false
		}
		switch {
		case f%1000 != 0:
			ns = true
		case f%1000000 != 0:
			us = true
		case f != 0:
			ms = true
		}
	}
	switch {
	case len(frame) > 0 && datesOnly:
		return time.DateOnly
	case ns:
		return "2006-01-02 15:04:05.000000000"
	case us:
		return "2006-01-02 15:04:05.000000"
	case ms:
		return "2006-01-02 15:04:05.000"
	default:
		return time.DateTime
	}
}

// fileNameFrame is the submissions the original's frame holds: verified,
// with no validation error (a missing state hash does not matter here).
func fileNameFrame(subs []Submission) []*Submission {
	var frame []*Submission
	for i := range subs {
		s := &subs[i]
		if s.Verified != nil && *s.Verified && (s.ValidationError == nil || *s.ValidationError == "") {
			frame = append(frame, s)
		}
	}
	return frame
}

func fileName(s *Submission, layout string) string {
	return s.SubmittedAt.UTC().Format(layout) + "-" + s.Submitter
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
