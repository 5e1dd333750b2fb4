package web

import (
	"fmt"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/api"
)

// chart is a score-history line chart drawn as SVG on the server.
type chart struct {
	Width, Height    int
	Left, Right, Top int
	Bottom           int
	Points           string // polyline points
	N                int
	From, To         time.Time
	Min, Max, Last   string
	Summary          string
	GridY            []gridLine
}

type gridLine struct {
	Y     int
	Label string
}

func newChart(hist []api.HistoryPoint) *chart {
	c := &chart{Width: 720, Height: 240, Left: 48, Right: 12, Top: 12, Bottom: 28, N: len(hist)}
	plotW, plotH := c.Width-c.Left-c.Right, c.Height-c.Top-c.Bottom
	for _, v := range []int{0, 25, 50, 75, 100} {
		c.GridY = append(c.GridY, gridLine{Y: c.Top + plotH - plotH*v/100, Label: fmt.Sprintf("%d%%", v)})
	}
	if len(hist) == 0 {
		c.Summary = "No score history yet."
		return c
	}
	c.From, c.To = hist[0].ScoreAt, hist[len(hist)-1].ScoreAt
	span := c.To.Sub(c.From).Seconds()
	lo, hi := 101.0, -1.0
	var b strings.Builder
	for i, h := range hist {
		v := 0.0
		if h.ScorePercent != nil {
			v = *h.ScorePercent
		}
		lo, hi = min(lo, v), max(hi, v)
		x := float64(c.Left)
		if span > 0 {
			x += float64(plotW) * h.ScoreAt.Sub(c.From).Seconds() / span
		}
		y := float64(c.Top) + float64(plotH)*(1-v/100)
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	c.Points = b.String()
	c.Min, c.Max = fmt.Sprintf("%.2f%%", lo), fmt.Sprintf("%.2f%%", hi)
	c.Last = pct(hist[len(hist)-1].ScorePercent)
	c.Summary = fmt.Sprintf("Score from %s to %s: %d points, lowest %s, highest %s, latest %s.",
		c.From.Format("2006-01-02 15:04"), c.To.Format("2006-01-02 15:04"), len(hist), c.Min, c.Max, c.Last)
	return c
}
