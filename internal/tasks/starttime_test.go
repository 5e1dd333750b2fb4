package tasks

import (
	"strings"
	"testing"
	"time"
)

func TestParseStartTime(t *testing.T) {
	now := time.Date(2024, 6, 5, 12, 30, 45, 0, time.UTC)
	ten, neg, ancient := 10, -1, 30_000_000
	for _, tc := range []struct {
		value   string
		minsAgo *int
		want    time.Time
		wantErr string
	}{
		{"", nil, now, ""},
		{"1717545600", nil, time.Date(2024, 6, 5, 0, 0, 0, 0, time.UTC), ""},
		{" 1717545600 ", nil, time.Date(2024, 6, 5, 0, 0, 0, 0, time.UTC), ""},
		{"0", nil, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{"253402300799", nil, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), ""},
		{"2024-06-05 00:00:00", nil, time.Date(2024, 6, 5, 0, 0, 0, 0, time.UTC), ""},
		{"2024-06-05T01:02:03", nil, time.Date(2024, 6, 5, 1, 2, 3, 0, time.UTC), ""},
		{"2024-06-05T01:02:03Z", nil, time.Date(2024, 6, 5, 1, 2, 3, 0, time.UTC), ""},
		{"2024-06-05t01:02:03z", nil, time.Date(2024, 6, 5, 1, 2, 3, 0, time.UTC), ""},
		{"2024-06-05T01:02:03.5Z", nil, time.Date(2024, 6, 5, 1, 2, 3, 500_000_000, time.UTC), ""},
		{"2024-06-05T03:02:03+02:00", nil, time.Date(2024, 6, 5, 1, 2, 3, 0, time.UTC), ""},
		{"2024-06-05 01:02:03-0130", nil, time.Date(2024, 6, 5, 2, 32, 3, 0, time.UTC), ""},
		{"", &ten, time.Date(2024, 6, 5, 12, 20, 45, 0, time.UTC), ""},
		{"", &neg, time.Time{}, "must be >= 0"},
		{"", &ancient, time.Time{}, "before 1970"},
		{"1717545600", &ten, time.Time{}, "not both"},
		{"1717545600000", nil, time.Time{}, "looks like milliseconds, the epoch is in seconds (1717545600)"},
		{"253402300800", nil, time.Time{}, "after year 9999"},
		{"1717545600000000", nil, time.Time{}, "after year 9999; expected unix seconds"},
		{"yesterday", nil, time.Time{}, "expected unix seconds or a date and time"},
		{"1717545600.5", nil, time.Time{}, "expected unix seconds"},
		{"-5", nil, time.Time{}, "expected unix seconds"},
		{"2024-13-05 00:00:00", nil, time.Time{}, "month out of range"},
		{"2024-06-05 00:00", nil, time.Time{}, "expected unix seconds or a date and time"},
	} {
		got, err := ParseStartTime(tc.value, tc.minsAgo, now)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseStartTime(%q, %v): error %v, want one containing %q", tc.value, tc.minsAgo, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseStartTime(%q, %v): %v", tc.value, tc.minsAgo, err)
		case !got.Equal(tc.want):
			t.Errorf("ParseStartTime(%q, %v) = %v, want %v", tc.value, tc.minsAgo, got, tc.want)
		}
	}
}
