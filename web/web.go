// Package web serves the coordinator's web pages: the leaderboard and a page
// per producer, rendered on the server from the read API's queries (the
// tables work without JavaScript), with embedded assets (no build step, no
// CDN) and a small script that follows the batch stream to update the page
// in place.
package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/delegation-program/uptime-coordinator/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pageSize is the number of leaderboard lines per page.
const pageSize = 50

// Pages serves the web pages.
type Pages struct {
	Reader *api.Reader
	Logger *slog.Logger
	tmpl   *template.Template
}

// Register adds the pages and their assets to mux.
func (p *Pages) Register(mux *http.ServeMux) {
	p.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"pct": pct,
		"status": func(b *bool) string {
			switch {
			case b == nil:
				return "unknown"
			case *b:
				return "approved"
			}
			return "not approved"
		},
		"time":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"short": func(k string) string { return k[:min(len(k), 12)] + "…" + k[max(0, len(k)-6):] },
	}).ParseFS(templateFS, "templates/*.html"))
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", p.leaderboard)
	mux.HandleFunc("GET /producers/{key}", p.producer)
}

func pct(f *float64) string {
	if f == nil {
		return "–"
	}
	return strconv.FormatFloat(*f, 'f', 2, 64) + "%"
}

type windowOption struct {
	Value, Label string
	Selected     bool
}

type leaderboardPage struct {
	Title    string
	Window   string
	Windows  []windowOption
	Search   string
	Status   string
	Board    *api.Leaderboard
	Offset   int
	Prev     string
	Next     string
	Error    string
	AsOf     string
	Producer string
}

func (p *Pages) leaderboard(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page := leaderboardPage{Title: "Uptime leaderboard", Window: q.Get("window"), Search: strings.TrimSpace(q.Get("search")), Status: q.Get("application_status")}
	if page.Window == "" {
		page.Window = api.WindowName(p.Reader.UptimeDays)
	}
	if page.Status == "" {
		page.Status = "any"
	}
	days, err := api.ParseWindow(page.Window)
	status := http.StatusOK
	if err != nil {
		page.Error, status = err.Error(), http.StatusBadRequest
	} else if page.Status != "any" && page.Status != "true" && page.Status != "false" {
		page.Error, status = "application_status: expected true, false or any", http.StatusBadRequest
	}
	if off, err := strconv.Atoi(q.Get("offset")); err == nil && off > 0 {
		page.Offset = off
	}
	seen := false
	for _, s := range api.StandardWindows {
		page.Windows = append(page.Windows, windowOption{Value: s, Label: s, Selected: s == page.Window})
		seen = seen || s == page.Window
	}
	if !seen && page.Error == "" {
		page.Windows = append(page.Windows, windowOption{Value: page.Window, Label: page.Window, Selected: true})
	}
	if page.Error == "" {
		b, err := p.Reader.Leaderboard(r.Context(), days)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		page.Board = b.Page(api.WindowName(days), page.Status, page.Search, page.Offset, pageSize)
		if page.Board.AsOf != nil {
			page.AsOf = page.Board.AsOf.Format(time.RFC3339)
		}
		link := func(off int) string {
			v := url.Values{"window": {page.Window}, "offset": {strconv.Itoa(off)}}
			if page.Search != "" {
				v.Set("search", page.Search)
			}
			if page.Status != "any" {
				v.Set("application_status", page.Status)
			}
			return "/?" + v.Encode()
		}
		if page.Offset > 0 {
			page.Prev = link(max(0, page.Offset-pageSize))
		}
		if page.Offset+pageSize < page.Board.Total {
			page.Next = link(page.Offset + pageSize)
		}
	}
	p.render(w, status, "leaderboard.html", page)
}

type producerPage struct {
	Title    string
	P        *api.Producer
	Chart    *chart
	AsOf     string
	Error    string
	Producer string
}

func (p *Pages) producer(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	page := producerPage{Title: "Producer " + key, Producer: key}
	if !api.ValidKey(key) {
		page.Error = "Not a Mina public key: B62 followed by 52 base58 characters."
		p.render(w, http.StatusBadRequest, "producer.html", page)
		return
	}
	prod, err := p.Reader.Producer(r.Context(), key)
	if api.IsNotFound(err) {
		page.Error = "No producer with this key has been scored."
		p.render(w, http.StatusNotFound, "producer.html", page)
		return
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	page.P = prod
	if prod.AsOf != nil {
		page.AsOf = prod.AsOf.Format(time.RFC3339)
		hist, err := p.Reader.HistorySample(r.Context(), prod)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		page.Chart = newChart(hist)
	}
	p.render(w, http.StatusOK, "producer.html", page)
}

func (p *Pages) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() == nil && p.Logger != nil {
		p.Logger.Error("web page query failed", "path", r.URL.Path, "err", err)
	}
	http.Error(w, "reading the database failed", http.StatusInternalServerError)
}

func (p *Pages) render(w http.ResponseWriter, status int, name string, data any) {
	var b strings.Builder
	if err := p.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		if p.Logger != nil {
			p.Logger.Error("rendering a page failed", "page", name, "err", err)
		}
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}
