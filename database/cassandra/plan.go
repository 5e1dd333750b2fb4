package cassandra

import (
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

const (
	// ShardSeconds is the width of one shard: the collector cuts each UTC day
	// into ShardsPerDay slices of this many seconds.
	ShardSeconds = 144
	// ShardsPerDay is the number of shards of a day.
	ShardsPerDay = 24 * 60 * 60 / ShardSeconds
	// MaxPartitionsPerQuery is the most (date, shard) pairs one statement may
	// name: Keyspaces expands IN lists into at most 100 single-partition
	// queries.
	MaxPartitionsPerQuery = 100

	// DateLayout is how submitted_at_date spells a date.
	DateLayout = "2006-01-02"
)

// Shard returns the collector's shard of t: seconds since midnight UTC
// divided by ShardSeconds.
func Shard(t time.Time) int {
	t = t.UTC()
	return (t.Hour()*3600 + t.Minute()*60 + t.Second()) / ShardSeconds
}

// PartitionDate returns the collector's submitted_at_date of t.
func PartitionDate(t time.Time) string { return t.UTC().Format(DateLayout) }

// query is one statement of a read: every date of dates combined with every
// shard of shards, and submitted_at in [from, to).
type query struct {
	dates    []string
	shards   []int
	from, to time.Time
}

// bounds returns the timestamps that select exactly the rows of w.
// submitted_at is stored in milliseconds and the driver truncates bound
// values to milliseconds, so both ends are rounded up: a row at millisecond
// t lies in [start, end) exactly when ceil(start) <= t < ceil(end).
func bounds(w coordinator.Window) (from, to time.Time) {
	return ceilMilli(w.Start.UTC()), ceilMilli(w.End.UTC())
}

func ceilMilli(t time.Time) time.Time {
	if r := t.Truncate(time.Millisecond); !r.Equal(t) {
		return r.Add(time.Millisecond)
	}
	return t
}

// plan returns the statements that together read the window: the partitions
// the window touches, grouped so that no statement names more than
// MaxPartitionsPerQuery of them and no partition is read twice. An empty
// window needs no statement.
func plan(w coordinator.Window) []query {
	from, to := bounds(w)
	if !from.Before(to) {
		return nil
	}
	first, last := from, to.Add(-time.Millisecond) // the first and last millisecond a row can have

	// Consecutive dates with the same shard range share statements: only
	// the first and the last date of a window are partial.
	type group struct {
		dates  []string
		lo, hi int
	}
	var groups []group
	lastDay := PartitionDate(last)
	y, m, d := first.Date()
	for day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC); ; day = day.AddDate(0, 0, 1) {
		date := PartitionDate(day)
		lo, hi := 0, ShardsPerDay-1
		if date == PartitionDate(first) {
			lo = Shard(first)
		}
		if date == lastDay {
			hi = Shard(last)
		}
		if n := len(groups); n > 0 && groups[n-1].lo == lo && groups[n-1].hi == hi {
			groups[n-1].dates = append(groups[n-1].dates, date)
		} else {
			groups = append(groups, group{dates: []string{date}, lo: lo, hi: hi})
		}
		if date == lastDay {
			break
		}
	}

	var qs []query
	for _, g := range groups {
		n := g.hi - g.lo + 1
		if n >= MaxPartitionsPerQuery {
			// One date per statement, its shards in near-equal pieces.
			pieces := (n + MaxPartitionsPerQuery - 1) / MaxPartitionsPerQuery
			size := (n + pieces - 1) / pieces
			for _, d := range g.dates {
				for lo := g.lo; lo <= g.hi; lo += size {
					qs = append(qs, query{dates: []string{d}, shards: shardRange(lo, min(lo+size-1, g.hi)), from: from, to: to})
				}
			}
			continue
		}
		perQuery := MaxPartitionsPerQuery / n
		for i := 0; i < len(g.dates); i += perQuery {
			ds := g.dates[i:min(i+perQuery, len(g.dates))]
			qs = append(qs, query{dates: ds, shards: shardRange(g.lo, g.hi), from: from, to: to})
		}
	}
	return qs
}

func shardRange(lo, hi int) []int {
	s := make([]int, 0, hi-lo+1)
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}
