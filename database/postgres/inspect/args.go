package inspect

import (
	"fmt"
	"time"
)

// ParseTime parses a time bound of explain: RFC 3339, or
// "YYYY-MM-DD HH:MM:SS" in UTC.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.ParseInLocation(time.DateTime, s, time.UTC); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf(`invalid time %q: want RFC 3339 (2024-06-01T12:00:00Z) or "YYYY-MM-DD HH:MM:SS" (UTC)`, s)
}

// CheckFormat accepts text and json.
func CheckFormat(f string) error {
	if f != FormatText && f != FormatJSON {
		return fmt.Errorf("invalid format %q: want text or json", f)
	}
	return nil
}

// DefaultRange is explain's range when --from / --to are not given: the
// last 24 hours of batches.
const DefaultRange = 24 * time.Hour

// Range resolves explain's --from and --to ("" when not given) as of now:
// to defaults to now, from to 24 hours before to.
func Range(from, to string, now time.Time) (time.Time, time.Time, error) {
	end := now.UTC()
	if to != "" {
		t, err := ParseTime(to)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("--to: %w", err)
		}
		end = t
	}
	start := end.Add(-DefaultRange)
	if from != "" {
		t, err := ParseTime(from)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("--from: %w", err)
		}
		start = t
	}
	if !start.Before(end) {
		return time.Time{}, time.Time{}, fmt.Errorf("--from %s is not before --to %s", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	return start, end, nil
}
