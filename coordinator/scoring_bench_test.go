package coordinator_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// BenchmarkScore measures the pure scoring of one 20-minute batch.
func BenchmarkScore(b *testing.B) {
	for _, producers := range []int{200, 1000, 10000} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
			net := synthnet.Generate(synthnet.Params{Seed: 1, Producers: producers, Start: start, Duration: 40 * time.Minute})
			subs := net.Verified()
			first := synthnet.Window(subs, coordinator.Window{Start: start, End: start.Add(20 * time.Minute)})
			second := synthnet.Window(subs, coordinator.Window{Start: start.Add(20 * time.Minute), End: start.Add(40 * time.Minute)})
			prev := coordinator.Score(first, nil).Shortlist
			b.ReportAllocs()
			b.ResetTimer()
			var r *coordinator.Result
			for b.Loop() {
				r = coordinator.Score(second, prev)
			}
			b.ReportMetric(float64(len(r.Valid)), "valid/batch")
			b.ReportMetric(float64(len(r.Points)), "points/batch")
		})
	}
}

// BenchmarkEvidence measures the pure per-producer evidence of one
// 20-minute batch.
func BenchmarkEvidence(b *testing.B) {
	for _, producers := range []int{3000, 10000} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
			net := synthnet.Generate(synthnet.Params{Seed: 1, Producers: producers, Start: start, Duration: 20 * time.Minute})
			subs := net.Verified()
			r := coordinator.Score(subs, nil)
			b.ReportAllocs()
			for b.Loop() {
				coordinator.Evidence(subs, r)
			}
		})
	}
}
