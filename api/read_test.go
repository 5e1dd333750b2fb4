package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jackc/pgx/v5/pgxpool"
)

type item struct {
	Rank              int      `json:"rank"`
	Producer          string   `json:"producer"`
	Points            int      `json:"points"`
	ScorePercent      *float64 `json:"score_percent"`
	ApplicationStatus *bool    `json:"application_status"`
}

type board struct {
	Window  string `json:"window"`
	AsOf    string `json:"as_of"`
	Surveys int    `json:"surveys"`
	Total   int    `json:"total"`
	Items   []item `json:"items"`
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
	return v
}

func pct(p *float64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatFloat(*p, 'f', 2, 64)
}

func (it item) line() string {
	return fmt.Sprintf("%d|%s|%d|%s", it.Rank, it.Producer, it.Points, pct(it.ScorePercent))
}

// expectedBoard is the test's own computation of a window's leaderboard
// from the raw rows: the batches (files_processed > -1) inside
// [latest end - days, latest end], each producer's points_summary rows in
// them, hundredths truncated, best first then by key.
func expectedBoard(t *testing.T, pool *pgxpool.Pool, days int) (surveys int, lines []string) {
	t.Helper()
	ctx := context.Background()
	type batch struct{ start, end, files int64 }
	batches := map[int64]batch{}
	var latest int64
	rows, err := pool.Query(ctx, `SELECT id, batch_start_epoch, batch_end_epoch, files_processed FROM bot_logs`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var b batch
		if err := rows.Scan(&id, &b.start, &b.end, &b.files); err != nil {
			t.Fatal(err)
		}
		batches[id] = b
		latest = max(latest, b.end)
	}
	rows.Close()
	from := latest - int64(days)*86400
	in := map[int64]bool{}
	for id, b := range batches {
		if b.files > -1 && b.start >= from && b.end <= latest {
			in[id] = true
			surveys++
		}
	}
	points := map[string]int{}
	rows, err = pool.Query(ctx, `SELECT ps.bot_log_id, n.block_producer_key FROM points_summary ps JOIN nodes n ON n.id = ps.node_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var key string
		if err := rows.Scan(&id, &key); err != nil {
			t.Fatal(err)
		}
		if in[id] {
			points[key]++
		}
	}
	rows.Close()
	rows, err = pool.Query(ctx, `SELECT block_producer_key FROM nodes WHERE score IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key string
		if err := rows.Scan(&key); err != nil {
			t.Fatal(err)
		}
		points[key] += 0
	}
	rows.Close()
	keys := make([]string, 0, len(points))
	for k := range points {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if points[keys[i]] != points[keys[j]] {
			return points[keys[i]] > points[keys[j]]
		}
		return keys[i] < keys[j]
	})
	for i, k := range keys {
		h := points[k] * 10000 / surveys
		lines = append(lines, fmt.Sprintf("%d|%s|%d|%d.%02d", i+1, k, points[k], h/100, h%100))
	}
	return surveys, lines
}

func TestRead(t *testing.T) {
	t.Parallel()
	s := seed(t, 36) // 3 days
	ctx := context.Background()
	// Application status as the spreadsheet updater writes it: every third
	// producer approved, every fifth rejected, the rest unknown.
	if _, err := s.Pool.Exec(ctx, `UPDATE nodes SET application_status = CASE WHEN id % 3 = 0 THEN true WHEN id % 5 = 0 THEN false END`); err != nil {
		t.Fatal(err)
	}
	ts, _ := serve(t, s.Cfg, s.Pool)
	base := ts.URL + "/api/v1"

	t.Run("default window is nodes", func(t *testing.T) {
		b := getJSON[board](t, base+"/leaderboard?limit=1000")
		if b.Window != "2d" || b.Surveys != 24 || !strings.HasSuffix(b.AsOf, "Z") || b.AsOf != "2024-06-04T00:00:00Z" {
			t.Errorf("window %q surveys %d as_of %q, want 2d 24 2024-06-04T00:00:00Z", b.Window, b.Surveys, b.AsOf)
		}
		var want []string
		rows, err := s.Pool.Query(ctx, `SELECT block_producer_key || '|' || score || '|' || score_percent::text FROM nodes WHERE score IS NOT NULL`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			want = append(want, l)
		}
		rows.Close()
		var got []string
		for _, it := range b.Items {
			got = append(got, fmt.Sprintf("%s|%d|%s", it.Producer, it.Points, pct(it.ScorePercent)))
		}
		slices.Sort(got)
		slices.Sort(want)
		if len(want) < producers*9/10 || !slices.Equal(got, want) || b.Total != len(want) {
			t.Errorf("leaderboard (%d of %d) differs from nodes (%d rows):\n got %v\nwant %v", len(got), b.Total, len(want), got, want)
		}
		// Best first, ties by key.
		for i := 1; i < len(b.Items); i++ {
			p, c := b.Items[i-1], b.Items[i]
			if c.Rank != i+1 || p.Points < c.Points || (p.Points == c.Points && p.Producer > c.Producer) {
				t.Fatalf("items %d and %d out of order: %+v %+v", i-1, i, p, c)
			}
		}
	})

	for _, w := range []struct {
		name          string
		days, surveys int
	}{{"24h", 1, 12}, {"7d", 7, 36}, {"2d", 2, 24}, {"3d", 3, 36}} {
		t.Run("window "+w.name, func(t *testing.T) {
			b := getJSON[board](t, base+"/leaderboard?limit=1000&window="+w.name)
			surveys, want := expectedBoard(t, s.Pool, w.days)
			if b.Window != w.name || b.Surveys != w.surveys || surveys != w.surveys {
				t.Errorf("window %q surveys %d (computed %d), want %s %d", b.Window, b.Surveys, surveys, w.name, w.surveys)
			}
			var got []string
			for _, it := range b.Items {
				got = append(got, it.line())
			}
			if !slices.Equal(got, want) {
				t.Errorf("window %s:\n got %v\nwant %v", w.name, got, want)
			}
		})
	}

	t.Run("windows differ", func(t *testing.T) {
		_, day := expectedBoard(t, s.Pool, 1)
		_, two := expectedBoard(t, s.Pool, 2)
		if slices.Equal(day, two) {
			t.Error("weak test data: the 24h and 2d leaderboards are the same")
		}
	})

	t.Run("application status filter", func(t *testing.T) {
		all := getJSON[board](t, base+"/leaderboard?limit=1000")
		for _, f := range []string{"true", "false"} {
			b := getJSON[board](t, base+"/leaderboard?limit=1000&application_status="+f)
			var want []string
			for _, it := range all.Items {
				approved := it.ApplicationStatus != nil && *it.ApplicationStatus
				if strconv.FormatBool(approved) == f {
					want = append(want, it.Producer)
				}
			}
			var got []string
			for i, it := range b.Items {
				if it.Rank != i+1 {
					t.Errorf("filtered rank %d at %d", it.Rank, i)
				}
				got = append(got, it.Producer)
			}
			if len(want) == 0 || len(want) == len(all.Items) || !slices.Equal(got, want) || b.Total != len(want) {
				t.Errorf("application_status=%s: got %d producers, want %d", f, len(got), len(want))
			}
		}
	})

	t.Run("csv equals json", func(t *testing.T) {
		b := getJSON[board](t, base+"/leaderboard?window=24h&limit=1000")
		want := [][]string{{"rank", "producer", "points", "score_percent", "application_status"}}
		for _, it := range b.Items {
			st := ""
			if it.ApplicationStatus != nil {
				st = strconv.FormatBool(*it.ApplicationStatus)
			}
			want = append(want, []string{strconv.Itoa(it.Rank), it.Producer, strconv.Itoa(it.Points), pct(it.ScorePercent), st})
		}
		for _, variant := range [][]string{{"?format=csv&window=24h&limit=1000"}, {"?window=24h&limit=1000", "Accept", "text/csv"}} {
			resp, body := get(t, base+"/leaderboard"+variant[0], variant[1:]...)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
				t.Fatalf("%v: %d %s", variant, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			got, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("%v: CSV differs from JSON:\n%v\n%v", variant, got, want)
			}
		}
	})

	t.Run("stable paging", func(t *testing.T) {
		full := getJSON[board](t, base+"/leaderboard?window=24h&limit=1000")
		var paged []string
		for off := 0; off < full.Total; off += 7 {
			b := getJSON[board](t, base+fmt.Sprintf("/leaderboard?window=24h&limit=7&offset=%d", off))
			if len(b.Items) > 7 || b.Total != full.Total {
				t.Fatalf("page at %d: %d items, total %d", off, len(b.Items), b.Total)
			}
			for _, it := range b.Items {
				paged = append(paged, it.line())
			}
		}
		var want []string
		for _, it := range full.Items {
			want = append(want, it.line())
		}
		if !slices.Equal(paged, want) {
			t.Errorf("pages differ from the whole:\n got %v\nwant %v", paged, want)
		}
	})

	t.Run("caching", func(t *testing.T) {
		resp, _ := get(t, base+"/leaderboard")
		etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
		if etag == "" || lm != "Tue, 04 Jun 2024 00:00:00 GMT" {
			t.Fatalf("ETag %q Last-Modified %q", etag, lm)
		}
		if resp, _ := get(t, base+"/leaderboard", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match with the current tag: %d, want 304", resp.StatusCode)
		}
		if resp, _ := get(t, base+"/leaderboard", "If-Modified-Since", lm); resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-Modified-Since the last batch: %d, want 304", resp.StatusCode)
		}
		if resp, _ := get(t, base+"/leaderboard?format=csv", "If-None-Match", etag); resp.StatusCode != http.StatusOK {
			t.Errorf("the JSON tag on the CSV form: %d, want 200", resp.StatusCode)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		key := s.Net.Producers[0]
		unknown := "B62q" + strings.Repeat("z", 51)
		for _, c := range []struct {
			path   string
			status int
			names  string
		}{
			{"/leaderboard?window=abc", 400, "window"},
			{"/leaderboard?window=0d", 400, "window"},
			{"/leaderboard?window=7h", 400, "window"},
			{"/leaderboard?limit=-1", 400, "limit"},
			{"/leaderboard?offset=x", 400, "offset"},
			{"/leaderboard?application_status=maybe", 400, "application_status"},
			{"/producers/" + unknown, 404, unknown},
			{"/producers/B62short", 400, "key"},
			{"/producers/" + unknown + "/history", 404, unknown},
			{"/producers/" + key + "/history?from=yesterday", 400, "from"},
			{"/producers/" + key + "/history?to=2024-13-01T00:00:00Z", 400, "to"},
			{"/batches?from=2024-06-01", 400, "from"},
			{"/batches/abc", 400, "bot_log_id"},
			{"/batches/999999", 404, "999999"},
		} {
			resp, body := get(t, base+c.path)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s: %d %s, want %d problem+json", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
				continue
			}
			var p struct {
				Status int    `json:"status"`
				Title  string `json:"title"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(body, &p); err != nil || p.Status != c.status || !strings.Contains(p.Detail, c.names) {
				t.Errorf("%s: problem %s does not name %q (%v)", c.path, body, c.names, err)
			}
		}
		// A huge limit is clamped, not refused.
		b := getJSON[board](t, base+"/leaderboard?limit=100000000")
		if len(b.Items) != b.Total {
			t.Errorf("limit=100000000: %d of %d items", len(b.Items), b.Total)
		}
	})

	t.Run("openapi", func(t *testing.T) {
		_, body := get(t, base+"/openapi.json")
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(body)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.1") {
			t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
		}
		if err := doc.Validate(ctx); err != nil {
			t.Errorf("the OpenAPI document does not validate: %v", err)
		}
		var paths []string
		for p, item := range doc.Paths.Map() {
			if item.Get != nil {
				paths = append(paths, p)
				if _, ok := item.Get.Responses.Map()["422"]; ok {
					t.Errorf("%s documents 422; bad parameters are 400", p)
				}
			}
		}
		slices.Sort(paths)
		want := []string{"/api/v1/batches", "/api/v1/batches/{bot_log_id}", "/api/v1/leaderboard", "/api/v1/producers/{key}",
			"/api/v1/producers/{key}/history", "/api/v1/stream", "/uptimescore/{pubkey}/{dataType}/{scoreAt}/"}
		if !slices.Equal(paths, want) {
			t.Errorf("paths %v, want %v", paths, want)
		}
	})
}
