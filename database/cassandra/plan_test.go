package cassandra

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

type partition struct {
	date  string
	shard int
}

// touched lists, by brute force, the partitions holding a millisecond of
// [from, to): both ends and every multiple of 12 s in between (every shard
// holds twelve of them).
func touched(from, to time.Time) map[partition]bool {
	out := map[partition]bool{}
	if !from.Before(to) {
		return out
	}
	last := to.Add(-time.Millisecond)
	add := func(t time.Time) {
		out[partition{t.UTC().Format("2006-01-02"), (t.UTC().Hour()*3600 + t.UTC().Minute()*60 + t.UTC().Second()) / 144}] = true
	}
	add(from)
	add(last)
	for t := from.Truncate(12 * time.Second); !t.After(last); t = t.Add(12 * time.Second) {
		if !t.Before(from) {
			add(t)
		}
	}
	return out
}

func checkPlan(t *testing.T, w coordinator.Window) []query {
	t.Helper()
	qs := plan(w)
	from, to := bounds(w)
	want := touched(from, to)
	got := map[partition]bool{}
	for i, q := range qs {
		if n := len(q.dates) * len(q.shards); n == 0 || n > MaxPartitionsPerQuery {
			t.Fatalf("window %v: statement %d names %d partitions", w, i, n)
		}
		if !q.from.Equal(from) || !q.to.Equal(to) {
			t.Fatalf("window %v: statement %d has bounds [%v, %v), want [%v, %v)", w, i, q.from, q.to, from, to)
		}
		for _, d := range q.dates {
			for _, s := range q.shards {
				p := partition{d, s}
				if got[p] {
					t.Fatalf("window %v: partition %v read twice", w, p)
				}
				got[p] = true
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("window %v: plan covers %d partitions, the window touches %d", w, len(got), len(want))
	}
	for p := range want {
		if !got[p] {
			t.Fatalf("window %v: partition %v is touched but not read", w, p)
		}
	}
	return qs
}

func TestPlanExamples(t *testing.T) {
	day := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		start, end time.Time
		statements int
	}{
		{"empty", day, day, 0},
		{"reversed", day.Add(time.Hour), day, 0},
		{"below a millisecond", day.Add(100 * time.Microsecond), day.Add(900 * time.Microsecond), 0},
		{"one millisecond", day, day.Add(time.Millisecond), 1},
		{"inside one shard", day.Add(145 * time.Second), day.Add(200 * time.Second), 1},
		{"one whole shard", day.Add(144 * time.Second), day.Add(288 * time.Second), 1},
		{"across shards", day.Add(100 * time.Second), day.Add(1000 * time.Second), 1},
		{"across midnight", day.Add(-10 * time.Minute), day.Add(10 * time.Minute), 2},
		{"a whole day", day, day.Add(24 * time.Hour), 6},
		{"a day and a millisecond", day, day.Add(24*time.Hour + time.Millisecond), 7},
		// 13:00 is shard 325: 275 shards in 3 statements, two whole days in
		// 6 each, then shards 0-124 in 2.
		{"three days unaligned", day.Add(13 * time.Hour), day.Add(72*time.Hour + 5*time.Hour), 3 + 6*2 + 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qs := checkPlan(t, coordinator.Window{Start: tt.start, End: tt.end})
			if len(qs) != tt.statements {
				t.Errorf("%d statements, want %d: %+v", len(qs), tt.statements, qs)
			}
		})
	}
}

func TestPlanWholeDays(t *testing.T) {
	// Whole days share a shard range; each still needs 600/100 statements of
	// one date, as a date is 600 partitions.
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	qs := checkPlan(t, coordinator.Window{Start: start, End: start.AddDate(0, 0, 3)})
	if len(qs) != 18 {
		t.Fatalf("%d statements, want 18", len(qs))
	}
	for _, q := range qs {
		if len(q.dates) != 1 || len(q.shards) != 100 {
			t.Fatalf("statement of %d dates x %d shards, want 1 x 100", len(q.dates), len(q.shards))
		}
	}
}

func TestPlanRandomWindows(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2023, 12, 30, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		start := base.Add(time.Duration(r.Int64N(int64(72 * time.Hour))))
		var length time.Duration
		switch i % 3 {
		case 0: // minutes, at nanosecond precision
			length = time.Duration(r.Int64N(int64(30 * time.Minute)))
		case 1: // hours, whole seconds
			start = start.Truncate(time.Second)
			length = time.Duration(r.Int64N(int64(30 * time.Hour))).Truncate(time.Second)
		default: // days, sometimes on shard boundaries
			start = start.Truncate(144 * time.Second)
			length = time.Duration(r.Int64N(4)+1) * 24 * time.Hour
			if r.IntN(2) == 0 {
				length += time.Duration(r.Int64N(600)) * 144 * time.Second
			}
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkPlan(t, coordinator.Window{Start: start, End: start.Add(length)})
		})
	}
}

func TestShard(t *testing.T) {
	day := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{
		{0, 0},
		{143*time.Second + 999*time.Millisecond, 0},
		{144 * time.Second, 1},
		{12 * time.Hour, 300},
		{24*time.Hour - time.Nanosecond, 599},
	} {
		if got := Shard(day.Add(tt.at)); got != tt.want {
			t.Errorf("Shard(midnight+%v) = %d, want %d", tt.at, got, tt.want)
		}
	}
	// Times in another zone are placed by their UTC clock.
	est := time.FixedZone("EST", -5*3600)
	if got := Shard(time.Date(2024, 2, 28, 19, 0, 0, 0, est)); got != 0 {
		t.Errorf("Shard(00:00 UTC given in EST) = %d, want 0", got)
	}
	if got := PartitionDate(time.Date(2024, 2, 28, 19, 0, 0, 0, est)); got != "2024-02-29" {
		t.Errorf("PartitionDate = %s, want 2024-02-29", got)
	}
}

func TestBoundsRoundUpToMilliseconds(t *testing.T) {
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	from, to := bounds(coordinator.Window{Start: at.Add(500 * time.Microsecond), End: at.Add(2*time.Millisecond + 1)})
	if !from.Equal(at.Add(time.Millisecond)) || !to.Equal(at.Add(3*time.Millisecond)) {
		t.Errorf("bounds = [%v, %v)", from, to)
	}
	from, to = bounds(coordinator.Window{Start: at, End: at.Add(time.Second)})
	if !from.Equal(at) || !to.Equal(at.Add(time.Second)) {
		t.Errorf("whole milliseconds must stay: [%v, %v)", from, to)
	}
}

// TestColumns: the submissions query reads the original's 15 columns, what
// scoring and the copy into Postgres need; never snark_work or raw_block.
func TestColumns(t *testing.T) {
	want := []string{"submitted_at_date", "submitted_at", "submitter", "created_at", "block_hash",
		"remote_addr", "peer_id", "graphql_control_port", "built_with_commit_sha",
		"state_hash", "parent", "height", "slot", "validation_error", "verified"}
	if !slices.Equal(columns, want) {
		t.Errorf("columns\n%q\nwant\n%q", columns, want)
	}
}
