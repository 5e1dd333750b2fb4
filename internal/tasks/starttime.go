package tasks

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxEpoch is 9999-12-31 23:59:59 UTC: later "epochs" are milliseconds or
// microseconds given by mistake, or garbage.
const maxEpoch = 253402300799

// datetimePattern is what the original's init_database handed to Python's
// datetime.fromisoformat: a date, a separator (space or T), a time, and
// optionally fractional seconds and a zone (Z or an offset).
var datetimePattern = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})[ Tt](\d{2}:\d{2}:\d{2}(?:\.\d+)?)([Zz]|[+-]\d{2}:?\d{2})?$`)

// ErrBothStartTimes is returned when a batch end epoch and minutes ago are
// both given: the original silently preferred minutes ago.
var ErrBothStartTimes = errors.New("give either a batch end epoch or minutes ago, not both")

// ParseStartTime turns init-database's arguments into the starting time:
// minsAgo minutes before now when minsAgo is not nil, else now when value is
// empty, else value as unix seconds or a date and time
// ("YYYY-MM-DD HH:MM:SS", "YYYY-MM-DDTHH:MM:SSZ", with optional fractional
// seconds and a UTC offset; UTC when it has no zone).
func ParseStartTime(value string, minsAgo *int, now time.Time) (time.Time, error) {
	value = strings.TrimSpace(value)
	if minsAgo != nil {
		if value != "" {
			return time.Time{}, ErrBothStartTimes
		}
		if *minsAgo < 0 {
			return time.Time{}, fmt.Errorf("minutes ago must be >= 0, got %d", *minsAgo)
		}
		at := now.Add(-time.Duration(*minsAgo) * time.Minute)
		if *minsAgo > int(now.Unix()/60) {
			return time.Time{}, fmt.Errorf("%d minutes ago is before 1970", *minsAgo)
		}
		return at.UTC().Truncate(time.Second), nil
	}
	if value == "" {
		return now.UTC().Truncate(time.Second), nil
	}
	if m := datetimePattern.FindStringSubmatch(value); m != nil {
		zone := strings.ToUpper(m[3])
		switch {
		case zone == "":
			zone = "Z"
		case len(zone) == 5: // +hhmm
			zone = zone[:3] + ":" + zone[3:]
		}
		t, err := time.Parse(time.RFC3339Nano, m[1]+"T"+m[2]+zone)
		if err != nil {
			return time.Time{}, fmt.Errorf("batch end %q: %w", value, err)
		}
		return t.UTC(), nil
	}
	n, err := strconv.ParseInt(value, 10, 64)
	switch {
	case err != nil || n < 0:
		return time.Time{}, fmt.Errorf("batch end %q: expected unix seconds or a date and time such as \"2024-06-05 00:00:00\" or 2024-06-05T00:00:00Z (UTC)", value)
	case n > maxEpoch && n >= 1e12 && n/1000 <= maxEpoch: // 2001 onwards in milliseconds
		return time.Time{}, fmt.Errorf("batch end %d: after year 9999; it looks like milliseconds, the epoch is in seconds (%d)", n, n/1000)
	case n > maxEpoch:
		return time.Time{}, fmt.Errorf("batch end %d: after year 9999; expected unix seconds", n)
	}
	return time.Unix(n, 0).UTC(), nil
}
