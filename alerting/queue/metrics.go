package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector reports the delivery queue at scrape time.
type collector struct {
	db   querier
	log  *slog.Logger
	desc *prometheus.Desc
}

// Collector returns a Prometheus collector of coordinator_alert_deliveries
// {state="pending"|"dead"}: deliveries waiting (or retrying) and dead
// letters (given up after their attempts, or refused for good), read from
// River's table at each scrape.
func Collector(db querier, log *slog.Logger) prometheus.Collector {
	return &collector{db: db, log: log, desc: prometheus.NewDesc("uptime_coordinator_alert_deliveries",
		"Alert deliveries by state: pending (queued or waiting for a retry) and dead (dead letters: attempts exhausted or refused for good).",
		[]string{"state"}, nil)}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := Count(ctx, c.db)
	if err != nil {
		c.log.Warn("metrics: the alert delivery counts are unavailable", "error", err)
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts.Pending), "pending")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts.Dead), "dead")
}
