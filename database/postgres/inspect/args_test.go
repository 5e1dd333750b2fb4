package inspect

import (
	"testing"
	"time"
)

func TestRange(t *testing.T) {
	now := time.Date(2024, 6, 5, 12, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		from, to         string
		wantFrom, wantTo string
	}{
		{"", "", "2024-06-04T12:30:00Z", "2024-06-05T12:30:00Z"},
		{"2024-06-01 00:00:00", "", "2024-06-01T00:00:00Z", "2024-06-05T12:30:00Z"},
		{"", "2024-06-03T00:00:00Z", "2024-06-02T00:00:00Z", "2024-06-03T00:00:00Z"},
		{"2024-06-01T02:00:00+02:00", "2024-06-02 00:00:00", "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z"},
	} {
		from, to, err := Range(tc.from, tc.to, now)
		if err != nil {
			t.Fatalf("Range(%q, %q): %v", tc.from, tc.to, err)
		}
		if got := from.Format(time.RFC3339); got != tc.wantFrom {
			t.Errorf("Range(%q, %q) from %s, want %s", tc.from, tc.to, got, tc.wantFrom)
		}
		if got := to.Format(time.RFC3339); got != tc.wantTo {
			t.Errorf("Range(%q, %q) to %s, want %s", tc.from, tc.to, got, tc.wantTo)
		}
	}
	for _, bad := range [][2]string{{"yesterday", ""}, {"", "2024-06-01"}, {"2024-06-02 00:00:00", "2024-06-02 00:00:00"}, {"2024-13-01 00:00:00", ""}} {
		if _, _, err := Range(bad[0], bad[1], now); err == nil {
			t.Errorf("Range(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
