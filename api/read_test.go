package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api"
	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
)

type batchList struct {
	Items []struct {
		ID               int64  `json:"bot_log_id"`
		End              string `json:"end"`
		ValidSubmissions int    `json:"valid_submissions"`
		ProducersPointed int    `json:"producers_with_point"`
		Evidence         *struct {
			Submissions int `json:"submissions"`
			Invalid     int `json:"invalid"`
		} `json:"evidence"`
		ErrorClasses []struct {
			Class       string  `json:"class"`
			Submissions int     `json:"submissions"`
			Share       float64 `json:"share"`
		} `json:"error_classes"`
	} `json:"items"`
}

type historyList struct {
	Items []struct {
		ScoreAt      string   `json:"score_at"`
		Score        int      `json:"score"`
		ScorePercent *float64 `json:"score_percent"`
	} `json:"items"`
}

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

	t.Run("producer", func(t *testing.T) {
		lines := map[int]map[string]string{}
		for _, d := range []int{1, 7, 30, 90} {
			_, ls := expectedBoard(t, s.Pool, d)
			lines[d] = map[string]string{}
			for _, l := range ls {
				f := strings.SplitN(l, "|", 3) // rank|key|points|percent
				lines[d][f[1]] = f[2]
			}
		}
		to := time.Date(2024, 6, 4, 0, 0, 1, 0, time.UTC)
		checked := 0
		for _, key := range s.Net.Producers[:30] {
			var p struct {
				Producer string `json:"producer"`
				Scores   []struct {
					Window       string   `json:"window"`
					Points       int      `json:"points"`
					Surveys      int      `json:"surveys"`
					ScorePercent *float64 `json:"score_percent"`
				} `json:"scores"`
				FirstPoint *struct {
					ID int64 `json:"bot_log_id"`
				} `json:"first_point_batch"`
				Batches24h int            `json:"batches_24h"`
				ByReason   map[string]int `json:"missed_24h_by_reason"`
				Missed     []struct {
					ID     int64  `json:"bot_log_id"`
					Reason string `json:"reason"`
				} `json:"missed_24h"`
			}
			resp, body := get(t, base+"/producers/"+key)
			if resp.StatusCode == 404 {
				continue // never earned a point: not in nodes
			}
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			checked++
			for i, d := range []int{1, 7, 30, 90} {
				sc := p.Scores[i]
				want, ok := lines[d][key]
				if !ok { // in nodes but never scored
					want = "0|0.00"
				}
				if got := fmt.Sprintf("%d|%s", sc.Points, pct(sc.ScorePercent)); sc.Window != []string{"24h", "7d", "30d", "90d"}[i] || got != want {
					t.Errorf("%s %s: %s, want %s", key, sc.Window, got, want)
				}
			}
			// The missed batches are explain's batches of the last 24 h without a point.
			ex, err := inspect.Explain(ctx, s.Pool, key, to.Add(-24*time.Hour+2*time.Hour-time.Second), to)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, b := range ex.Batches {
				if !b.Point {
					want = append(want, fmt.Sprintf("%d|%s", b.BotLogID, b.Reason))
				}
			}
			var got []string
			n := 0
			for _, m := range p.Missed {
				got = append(got, fmt.Sprintf("%d|%s", m.ID, m.Reason))
			}
			for _, c := range p.ByReason {
				n += c
			}
			if !slices.Equal(got, want) || n != len(want) || p.Batches24h != 12 {
				t.Errorf("%s missed %v (%v, of %d), want %v of 12", key, got, p.ByReason, p.Batches24h, want)
			}
		}
		if checked < 20 {
			t.Errorf("only %d producers checked", checked)
		}
	})

	t.Run("producer batches are explain's", func(t *testing.T) {
		from, to := time.Date(2024, 6, 2, 0, 0, 0, 0, time.UTC), time.Date(2024, 6, 3, 12, 0, 0, 0, time.UTC)
		reasons := map[string]int{}
		for _, key := range s.Net.Producers {
			ex, err := inspect.Explain(ctx, s.Pool, key, from, to)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(map[string]any{"batches": ex.Batches})
			var gotAll map[string]json.RawMessage
			_, body := get(t, base+"/producers/"+key+"/batches?from=2024-06-02T00:00:00Z&to=2024-06-03T12:00:00Z")
			if err := json.Unmarshal(body, &gotAll); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			got, _ := json.Marshal(map[string]any{"batches": gotAll["batches"]})
			var a, b any
			_ = json.Unmarshal(want, &a)
			_ = json.Unmarshal(got, &b)
			if !reflect.DeepEqual(a, b) || len(ex.Batches) != 18 {
				t.Errorf("%s: API %s\nexplain %s", key, got, want)
			}
			for _, b := range ex.Batches {
				reasons[b.Reason]++
			}
		}
		if len(reasons) < 3 {
			t.Errorf("weak test data: reasons %v", reasons)
		}
		resp, body := get(t, base+"/producers/"+s.Net.Producers[0]+"/batches?from=2024-06-02T00:00:00Z&to=2024-06-03T12:00:00Z&format=csv")
		if lines := strings.Split(strings.TrimSpace(string(body)), "\n"); resp.StatusCode != 200 || len(lines) != 19 ||
			!strings.HasPrefix(lines[0], "bot_log_id,window_start,window_end,point,reason") {
			t.Errorf("CSV: %d %s", resp.StatusCode, body)
		}
		for path, code := range map[string]int{
			"/producers/" + s.Net.Producers[0] + "/batches?from=2024-01-01T00:00:00Z&to=2024-06-03T00:00:00Z": 400,
			"/producers/" + s.Net.Producers[0] + "/batches?from=2024-06-03T00:00:00Z&to=2024-06-02T00:00:00Z": 400,
			"/producers/B62q" + strings.Repeat("z", 51) + "/batches":                                          404,
		} {
			if resp, _ := get(t, base+path); resp.StatusCode != code {
				t.Errorf("%s: %d, want %d", path, resp.StatusCode, code)
			}
		}
	})

	t.Run("batches", func(t *testing.T) {
		list := getJSON[batchList](t, base+"/batches?from=2024-06-03T00:00:00Z&to=2024-06-03T12:00:00Z&limit=5")
		if len(list.Items) != 5 || list.Items[0].End != "2024-06-03T12:00:00Z" {
			t.Fatalf("batches: %+v", list.Items)
		}
		classes := 0
		for _, it := range list.Items {
			var files, pointed, subs, invalid int
			if err := s.Pool.QueryRow(ctx, `SELECT b.files_processed, (SELECT count(*) FROM points_summary WHERE bot_log_id = b.id),
				e.submissions, e.invalid FROM bot_logs b JOIN batch_evidence_summary e ON e.bot_log_id = b.id WHERE b.id = $1`, it.ID).
				Scan(&files, &pointed, &subs, &invalid); err != nil {
				t.Fatal(err)
			}
			if it.ValidSubmissions != files || it.ProducersPointed != pointed || it.Evidence == nil || it.Evidence.Submissions != subs || it.Evidence.Invalid != invalid {
				t.Errorf("batch %d: %+v, want %d valid, %d pointed, %d submissions, %d invalid", it.ID, it, files, pointed, subs, invalid)
			}
			sum := 0
			for _, c := range it.ErrorClasses {
				var n int
				if err := s.Pool.QueryRow(ctx, `SELECT submissions FROM batch_error_classes WHERE bot_log_id = $1 AND class = $2`, it.ID, c.Class).Scan(&n); err != nil || n != c.Submissions {
					t.Errorf("batch %d class %s: %d, table %d (%v)", it.ID, c.Class, c.Submissions, n, err)
				}
				if want := float64(n) / float64(subs); c.Share != want {
					t.Errorf("batch %d class %s share %v, want %v", it.ID, c.Class, c.Share, want)
				}
				sum += n
				classes++
			}
			if sum != invalid {
				t.Errorf("batch %d: classes sum to %d, %d invalid", it.ID, sum, invalid)
			}
		}
		if classes == 0 {
			t.Error("weak test data: no error class in five batches")
		}
		resp, body := get(t, base+"/batches/"+strconv.FormatInt(list.Items[0].ID, 10)+"?format=csv")
		rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
		if err != nil || resp.StatusCode != 200 || len(rows) != 2 || rows[1][0] != strconv.FormatInt(list.Items[0].ID, 10) ||
			rows[1][3] != strconv.Itoa(list.Items[0].ValidSubmissions) {
			t.Errorf("batch CSV: %v %v", rows, err)
		}
	})

	var scored []string // producers with a score, by nodes id
	if rows, err := s.Pool.Query(ctx, `SELECT block_producer_key FROM nodes WHERE score IS NOT NULL ORDER BY id LIMIT 5`); err != nil {
		t.Fatal(err)
	} else if scored, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(scored) < 5 {
		t.Fatal(err, scored)
	}

	t.Run("history", func(t *testing.T) {
		key := scored[1]
		h := getJSON[historyList](t, base+"/producers/"+key+"/history?from=2024-06-02T00:00:00Z")
		var got []string
		for _, it := range h.Items {
			got = append(got, fmt.Sprintf("%s|%d|%s", it.ScoreAt, it.Score, pct(it.ScorePercent)))
		}
		rows, err := s.Pool.Query(ctx, `SELECT to_char(sh.score_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '|' || sh.score || '|' || sh.score_percent::text
			FROM score_history sh JOIN nodes n ON n.id = sh.node_id WHERE n.block_producer_key = $1 AND sh.score_at >= '2024-06-02' ORDER BY sh.score_at`, key)
		if err != nil {
			t.Fatal(err)
		}
		want, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 25 || !slices.Equal(got, want) {
			t.Errorf("history:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("history sample", func(t *testing.T) {
		// Every 5th scored batch (by position) of the 2-day window and
		// the latest: score_history's rows there.
		reader := &api.Reader{Pool: s.Pool, UptimeDays: uptimeDays, ChartStep: 5}
		got := chartLines(t, reader, scored[1])
		want := wantChart(t, s.Pool, scored[1], 5)
		if len(want) != 5 || !slices.Equal(got, want) {
			t.Errorf("sample:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("uptimescore", func(t *testing.T) {
		type score struct {
			Key     string `json:"block_producer_key"`
			Score   string `json:"score"`
			Percent string `json:"score_percent"`
		}
		rows, err := s.Pool.Query(ctx, `SELECT block_producer_key || '|' || score || '|' || score_percent::text FROM nodes
			WHERE application_status AND score IS NOT NULL ORDER BY score DESC, block_producer_key`)
		if err != nil {
			t.Fatal(err)
		}
		want, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		key := scored[2]
		// Current, one producer: its latest score_history row.
		var latest, at2, at1 string
		if err := s.Pool.QueryRow(ctx, `SELECT
			(SELECT sh.score || '|' || sh.score_percent FROM score_history sh WHERE sh.node_id = n.id ORDER BY score_at DESC LIMIT 1),
			(SELECT sh.score || '|' || sh.score_percent FROM score_history sh WHERE sh.node_id = n.id AND score_at = '2024-06-02 00:00'),
			(SELECT sh.score || '|' || sh.score_percent FROM score_history sh WHERE sh.node_id = n.id AND score_at = '2024-06-01 22:00')
			FROM nodes n WHERE block_producer_key = $1`, key).Scan(&latest, &at2, &at1); err != nil {
			t.Fatal(err)
		}
		for path, w := range map[string]string{
			"/uptimescore/" + key + "/snarkwork/current/":              latest,
			"/uptimescore/" + key + "/snarkwork/2024-06-02T01:00:00Z/": at2, // the latest batch strictly before
			"/uptimescore/" + key + "/snarkwork/2024-06-02T00:00:00Z/": at1,
		} {
			var got []score
			resp, body := get(t, ts.URL+path)
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || len(got) != 1 || got[0].Key != key ||
				got[0].Score+"|"+got[0].Percent != w {
				t.Errorf("%s: %d %s, want %s", path, resp.StatusCode, body, w)
			}
		}
		// Current, everyone: approved producers with a score, best first.
		var all []score
		resp, body := get(t, ts.URL+"/uptimescore/snarkwork/snarkwork/current/")
		if err := json.Unmarshal(body, &all); err != nil || resp.StatusCode != 200 {
			t.Fatalf("all current: %d %s", resp.StatusCode, body)
		}
		var got []string
		for i, sc := range all {
			got = append(got, sc.Key+"|"+sc.Score+"|"+sc.Percent)
			if i > 0 {
				p, _ := strconv.Atoi(all[i-1].Score)
				c, _ := strconv.Atoi(sc.Score)
				if c > p {
					t.Errorf("all current: not best first at %d", i)
				}
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if len(want) < 10 || !slices.Equal(got, want) {
			t.Errorf("all current:\n got %v\nwant %v", got, want)
		}
		// At a time, everyone: the scores of the latest batch before it.
		var n int
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM score_history WHERE score_at = '2024-06-02 00:00'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		resp, body = get(t, ts.URL+"/uptimescore/snarkwork/2024-06-02T01:00:00Z/x/")
		if err := json.Unmarshal(body, &all); err != nil || resp.StatusCode != 200 || len(all) != n || n == 0 {
			t.Errorf("all at a time: %d, %d rows, want %d", resp.StatusCode, len(all), n)
		}
		for path, want := range map[string]string{
			"/uptimescore/B62short/snarkwork/current/":                 `{"Error":"Invalid public key","Error_message":"Please provide correct public key"}`,
			"/uptimescore/" + key + "/other/current/":                  `{"Error":"Invalid datatype","Error_message":"Please provide datatype as snarkwork"}`,
			"/uptimescore/" + key + "/snarkwork/2024-06-02/":           `{"Error":"Invalid Date Format","Error_message":"Please make sure you use Valid Date in Format:2022-04-30T08:30:00Z"}`,
			"/uptimescore/" + key + "/snarkwork/2020-01-01T00:00:00Z/": `{"Error":"No data found","Error_message":"Please try again with different parameters"}`,
		} {
			resp, body := get(t, ts.URL+path)
			if resp.StatusCode != 404 || strings.TrimSpace(string(body)) != want {
				t.Errorf("%s: %d %s, want 404 %s", path, resp.StatusCode, body, want)
			}
		}
		if resp, body := get(t, ts.URL+"/uptimescore/"+key+"/snarkwork/current/?x=1"); resp.StatusCode != 400 || !strings.Contains(string(body), `"error":"Query parameters are not allowed"`) {
			t.Errorf("query string: %d %s", resp.StatusCode, body)
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
			"/api/v1/producers/{key}/batches", "/api/v1/producers/{key}/history", "/api/v1/stream", "/uptimescore/{pubkey}/{dataType}/{scoreAt}/"}
		if !slices.Equal(paths, want) {
			t.Errorf("paths %v, want %v", paths, want)
		}
	})
}

// chartLines is the producer's chart sample as score_at|score|percent lines.
func chartLines(t *testing.T, reader *api.Reader, key string) []string {
	t.Helper()
	p, err := reader.Producer(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := reader.HistorySample(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range hist {
		out = append(out, fmt.Sprintf("%s|%d|%s", h.ScoreAt.Format(time.RFC3339), h.Score, pct(h.ScorePercent)))
	}
	return out
}

// wantChart is the producer's score_history at every step-th scored batch
// (counted from the first) and the latest, over the uptimeDays days up to
// the latest batch.
func wantChart(t *testing.T, pool *pgxpool.Pool, key string, step int) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `WITH b AS (
			SELECT batch_end_epoch AS e, row_number() OVER (ORDER BY batch_end_epoch, id) - 1 AS ord, count(*) OVER () AS n
			FROM bot_logs WHERE files_processed > -1)
		SELECT to_char(sh.score_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '|' || sh.score || '|' || sh.score_percent::text
		FROM score_history sh JOIN nodes n ON n.id = sh.node_id JOIN b ON sh.score_at = to_timestamp(b.e) AT TIME ZONE 'UTC'
		WHERE n.block_producer_key = $1 AND (b.ord % $2 = 0 OR b.ord = b.n - 1)
		  AND b.e >= (SELECT max(batch_end_epoch) FROM bot_logs) - $3 * 86400
		ORDER BY sh.score_at`, key, step, uptimeDays)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// TestProducerFollowsBatches: the producer's missed batches and chart,
// answered from memory, and the leaderboards follow the batches as they
// land (the evidence and history kept are extended, not reloaded; the
// boards computed from the previous ones): they equal explain's,
// score_history's and the test's own computation after each batch.
func TestProducerFollowsBatches(t *testing.T) {
	t.Parallel()
	s := seed(t, 26)
	ctx := context.Background()
	reader := &api.Reader{Pool: s.Pool, UptimeDays: uptimeDays, ChartStep: 4}
	for round := range 4 {
		if round > 0 {
			s.Next(t, 1)
		}
		var l api.Latest
		var err error
		if l, err = reader.Latest(ctx); err != nil {
			t.Fatal(err)
		}
		missedSome, checked := 0, 0
		for _, key := range s.Net.Producers[:40] {
			p, err := reader.Producer(ctx, key)
			if api.IsNotFound(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			checked++
			if p.AsOf == nil || !p.AsOf.Equal(l.End) || p.Batch() != l {
				t.Fatalf("round %d: %s as of %v (%v), want %v", round, key, p.AsOf, p.Batch(), l)
			}
			ex, err := inspect.Explain(ctx, s.Pool, key, l.End.Add(-24*time.Hour), l.End.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var want, got []string
			for _, b := range ex.Batches {
				if !b.Point && !b.WindowStart.Before(l.End.Add(-24*time.Hour)) {
					want = append(want, fmt.Sprintf("%d|%s", b.BotLogID, b.Reason))
				}
			}
			for _, m := range p.MissedBatches {
				got = append(got, fmt.Sprintf("%d|%s", m.ID, m.Reason))
			}
			if !slices.Equal(got, want) {
				t.Errorf("round %d: %s missed %v, want %v", round, key, got, want)
			}
			if len(want) > 0 {
				missedSome++
			}
			if got, want := chartLines(t, reader, key), wantChart(t, s.Pool, key, 4); !slices.Equal(got, want) {
				t.Errorf("round %d: %s chart:\n got %v\nwant %v", round, key, got, want)
			}
		}
		if checked < 20 || missedSome == 0 {
			t.Fatalf("weak test data: %d producers checked, %d missed a batch", checked, missedSome)
		}
		// The leaderboards of windows other than the coordinator's, from
		// the previous batch's by difference after the first round.
		for _, d := range []int{1, 3} {
			b, err := reader.Leaderboard(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			surveys, want := expectedBoard(t, s.Pool, d)
			var got []string
			for i, row := range b.Rows {
				got = append(got, fmt.Sprintf("%d|%s|%d|%s", i+1, row.Producer, row.Points, pct(row.ScorePercent)))
			}
			if b.FromNodes || b.Surveys != surveys || !slices.Equal(got, want) {
				t.Errorf("round %d: %dd board (%d surveys):\n got %v\nwant %v (%d surveys)", round, d, b.Surveys, got, want, surveys)
			}
		}
	}
}
