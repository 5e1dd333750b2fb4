package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/delegation-program/uptime-coordinator/api/apitest"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// browser starts headless Chromium (Debian's chromium package; CHROMIUM
// names another binary). The test fails, never skips, without it.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := os.Getenv("CHROMIUM")
	if bin == "" {
		bin = "chromium"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("no Chromium for the browser tests (%v): install it (Debian: apt-get install -y chromium) or set CHROMIUM", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// loaded waits until the current document is parsed and loaded (after a
// wait for an element of the new page).
func loaded(t *testing.T, ctx context.Context) {
	t.Helper()
	for range 200 {
		if run(t, ctx, chromedp.Evaluate[string](`document.readyState`)) == "complete" {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("the page did not finish loading")
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type apiBoard struct {
	Items []struct {
		Producer string `json:"producer"`
		Points   int    `json:"points"`
	} `json:"items"`
}

func apiKeys(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var b apiBoard
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	var keys []string
	for _, it := range b.Items {
		keys = append(keys, fmt.Sprintf("%s|%d", it.Producer, it.Points))
	}
	return keys
}

// rowKeys reads the leaderboard's rows as "key|points".
const rowKeys = `Array.from(document.querySelectorAll("#leaderboard tbody tr")).map(tr => tr.cells[1].textContent.trim() + "|" + tr.cells[2].textContent.trim())`

func TestPagesInBrowser(t *testing.T) {
	t.Parallel()
	s := apitest.Seed(t, 26)
	ts, hub := apitest.Serve(t, s.Cfg, s.Pool)
	ctx := browser(t)

	// The leaderboard renders the API's first page of the default window.
	do(t, ctx, chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#leaderboard tbody tr")))
	loaded(t, ctx)
	title := run(t, ctx, chromedp.Title())
	keys := run(t, ctx, chromedp.Evaluate[[]string](rowKeys))
	want := apiKeys(t, ts.URL+"/api/v1/leaderboard?limit=50")
	if title != "Uptime leaderboard" || len(keys) != 50 || !slices.Equal(keys, want) {
		t.Fatalf("title %q, rows %v, want the API's %v", title, keys, want)
	}

	// The window selector changes them.
	do(t, ctx, chromedp.SetValue(chromedp.ID("window"), "24h"), chromedp.Click(chromedp.ID("apply")),
		chromedp.WaitVisible(`//strong[@id="board-window"][text()="24h"]`))
	loaded(t, ctx)
	window := run(t, ctx, chromedp.Text(chromedp.ID("board-window")))
	keys = run(t, ctx, chromedp.Evaluate[[]string](rowKeys))
	want24 := apiKeys(t, ts.URL+"/api/v1/leaderboard?window=24h&limit=50")
	if window != "24h" || !slices.Equal(keys, want24) || slices.Equal(want24, want) {
		t.Fatalf("24h window: rows %v, want %v (and different from the default window's)", keys, want24)
	}

	// Search by key.
	do(t, ctx, chromedp.SetValue(chromedp.ID("search"), want24[3][:20]), chromedp.Click(chromedp.ID("apply")),
		chromedp.WaitVisible(`//input[@id="search"][@value="`+want24[3][:20]+`"]`))
	loaded(t, ctx)
	keys = run(t, ctx, chromedp.Evaluate[[]string](rowKeys))
	if !slices.Equal(keys, []string{want24[3]}) {
		t.Fatalf("search: rows %v, want [%s]", keys, want24[3])
	}

	// A producer page: the chart and the missed batches with reasons, as
	// the API has them. Pick a producer that missed batches in the last day.
	var key string
	var missedAPI int
	for _, k := range s.Net.Producers {
		resp, err := http.Get(ts.URL + "/api/v1/producers/" + k)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Missed []struct{ Reason string } `json:"missed_24h"`
		}
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err == nil && len(p.Missed) > 0 {
			key, missedAPI = k, len(p.Missed)
			break
		}
	}
	if key == "" {
		t.Fatal("weak test data: no producer missed a batch in the last 24 hours")
	}
	do(t, ctx, chromedp.Navigate(ts.URL+"/producers/"+key), chromedp.WaitVisible(chromedp.ID("history-chart")))
	loaded(t, ctx)
	polyPoints := run(t, ctx, chromedp.Evaluate[[]string](`document.querySelector("#history-chart polyline").getAttribute("points").split(" ")`))
	svgTitle := run(t, ctx, chromedp.Evaluate[string](`document.querySelector("#history-chart title").textContent`))
	reasons := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#missed tbody td.reason")).map(td => td.textContent)`))
	var history int
	if err := s.Pool.QueryRow(context.Background(), `SELECT count(*) FROM score_history sh JOIN nodes n ON n.id = sh.node_id
		WHERE n.block_producer_key = $1 AND sh.score_at >= (SELECT to_timestamp(max(batch_end_epoch) - $2 * 86400) AT TIME ZONE 'UTC' FROM bot_logs)`,
		key, apitest.UptimeDays).Scan(&history); err != nil {
		t.Fatal(err)
	}
	if len(polyPoints) != history || history < 20 || svgTitle != "Score history" {
		t.Errorf("chart: %d points (title %q), want %d (the producer's score history of the window)", len(polyPoints), svgTitle, history)
	}
	if len(reasons) != missedAPI {
		t.Errorf("missed batches: %v, want %d", reasons, missedAPI)
	}
	for _, r := range reasons {
		if r == "" {
			t.Errorf("missed batch without a reason: %v", reasons)
		}
	}

	// Live: a batch committed while the leaderboard is open appears
	// without a reload.
	do(t, ctx, chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#leaderboard tbody tr")))
	loaded(t, ctx)
	for hub.Clients() > 1 { // the producer page's stream ends with the page
		time.Sleep(20 * time.Millisecond)
	}
	run(t, ctx, chromedp.Evaluate[bool](`window.notReloaded = true`))
	asOf := run(t, ctx, chromedp.AttributeValue(chromedp.ID("as-of"), "datetime")).Value
	deadline := time.Now().Add(10 * time.Second)
	for hub.Clients() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if hub.Clients() == 0 {
		t.Fatal("the page did not connect to the stream")
	}
	ids := s.Next(t, 1)
	wantEnd := apitest.Start.Add(27 * apitest.Interval).Format(time.RFC3339)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(fmt.Sprintf(`//time[@id="as-of"][@datetime=%q]`, wantEnd))); err != nil {
		t.Fatalf("the new batch did not appear: %v", err)
	}
	marker := run(t, ctx, chromedp.Evaluate[bool](`window.notReloaded === true`))
	status := run(t, ctx, chromedp.Text(chromedp.ID("live-status")))
	keys = run(t, ctx, chromedp.Evaluate[[]string](rowKeys))
	if !marker || !strings.Contains(status, fmt.Sprintf("batch %d", ids[0])) || asOf == wantEnd {
		t.Errorf("after the batch: reloaded=%v status %q (was as of %s)", !marker, status, asOf)
	}
	if want := apiKeys(t, ts.URL+"/api/v1/leaderboard?limit=50"); !slices.Equal(keys, want) {
		t.Errorf("rows after the batch %v, want %v", keys, want)
	}

	// Without JavaScript, the tables are there in the HTML itself.
	resp, err := http.Get(ts.URL + "/?window=7d")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Count(string(body), `<td class="key">`) != 50 {
		t.Errorf("server-rendered leaderboard: %d, %d rows", resp.StatusCode, strings.Count(string(body), `<td class="key">`))
	}
	for path, code := range map[string]int{"/producers/nope": 400, "/producers/B62q" + strings.Repeat("z", 51): 404, "/?window=x": 400} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, code)
		}
	}
}
