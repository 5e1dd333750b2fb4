package api

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxWindowDays is the longest window a request may ask for.
const MaxWindowDays = 3650

// StandardWindows are the windows the producer endpoint and the web pages
// show, shortest first.
var StandardWindows = []string{"24h", "7d", "30d", "90d"}

// ParseWindow turns "24h", "7d", "30d", "90d" or "Nd" into a number of days.
func ParseWindow(s string) (int, error) {
	if s == "24h" {
		return 1, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
	if !strings.HasSuffix(s, "d") || err != nil || strings.HasPrefix(s, "+") || strings.HasPrefix(s, "0") {
		return 0, fmt.Errorf("window %q: expected 24h, 7d, 30d, 90d or Nd (N whole days)", s)
	}
	if n < 1 || n > MaxWindowDays {
		return 0, fmt.Errorf("window %q: N must be between 1 and %d days", s, MaxWindowDays)
	}
	return n, nil
}

// WindowName is the canonical name of a window of days: "24h" for one day.
func WindowName(days int) string {
	if days == 1 {
		return "24h"
	}
	return strconv.Itoa(days) + "d"
}
