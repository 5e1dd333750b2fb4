// Package api is the coordinator's read API (`coordinator serve`): the
// leaderboard over any window, producers, their history and missed batches,
// batches, the existing leaderboard API's /uptimescore/ endpoint and a
// Server-Sent Events stream of committed batches. The HTTP API is huma v2 on
// the standard library's mux: the OpenAPI 3.1 document is generated from the
// Go types and served at /api/v1/openapi.json; errors are RFC 9457
// problem+json. It only ever reads the database.
package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/danielgtaylor/huma/v2/conditional"

	"github.com/delegation-program/uptime-coordinator/database/postgres/inspect"
)

// Prefix is the path prefix of the JSON API.
const Prefix = "/api/v1"

// MaxLimit is the largest page a list returns; larger limits are clamped.
const MaxLimit = 1000

// maxHistory bounds a history response (90 days of 20-minute batches is
// 6,480 points).
const maxHistory = 20000

// keyPattern is a Mina public key: B62 and 52 base58 characters.
const keyPattern = `^B62[1-9A-HJ-NP-Za-km-z]{52}$`

var keyRE = regexp.MustCompile(keyPattern)

// ValidKey reports whether s looks like a Mina public key.
func ValidKey(s string) bool { return keyRE.MatchString(s) }

// Server is the read API. Register adds its operations to a huma API;
// Handler serves them.
type Server struct {
	Reader *Reader
	Hub    *Hub
	Logger *slog.Logger
	// Heartbeat is the interval of the stream's heartbeat comments.
	Heartbeat time.Duration
}

// Registrar adds operations to the API (other features, such as alert
// subscriptions, register theirs next to the read API's).
type Registrar func(api huma.API)

// NewAPI creates the huma API on mux with the project's conventions:
// OpenAPI 3.1 at /api/v1/openapi.json, problem+json errors with status 400
// for bad parameters, JSON and CSV.
func NewAPI(mux *http.ServeMux) huma.API {
	cfg := huma.DefaultConfig("Uptime coordinator read API", "1.0.0")
	cfg.Info.Description = "Scores, producers, batches and a live stream of committed batches of the Mina delegation programme's uptime coordinator."
	cfg.OpenAPIPath = Prefix + "/openapi"
	cfg.SchemasPath = Prefix + "/schemas"
	cfg.DocsPath = ""     // the docs UI loads scripts from a CDN: none here
	cfg.CreateHooks = nil // no $schema links added to bodies: the shapes are contracts
	cfg.Formats = map[string]huma.Format{
		"application/json":         huma.DefaultJSONFormat,
		"json":                     huma.DefaultJSONFormat,
		"application/problem+json": huma.DefaultJSONFormat,
		"text/csv":                 csvFormat,
		"csv":                      csvFormat,
	}
	api := humago.New(mux, cfg)
	api.UseMiddleware(withHumaContext)
	return api
}

// Register adds every read operation to api. It is the one place where the
// read API's routes are declared.
func (s *Server) Register(api huma.API, more ...Registrar) {
	tag := []string{"scores"}
	huma.Register(api, huma.Operation{OperationID: "leaderboard", Method: http.MethodGet, Path: Prefix + "/leaderboard",
		Summary: "Leaderboard over a window", Tags: tag, Errors: []int{http.StatusBadRequest}}, s.leaderboard)
	huma.Register(api, huma.Operation{OperationID: "producer", Method: http.MethodGet, Path: Prefix + "/producers/{key}",
		Summary: "One producer's scores and missed batches", Tags: tag, Errors: []int{http.StatusBadRequest, http.StatusNotFound}}, s.producer)
	huma.Register(api, huma.Operation{OperationID: "producer-history", Method: http.MethodGet, Path: Prefix + "/producers/{key}/history",
		Summary: "One producer's score history", Tags: tag, Errors: []int{http.StatusBadRequest, http.StatusNotFound}}, s.history)
	huma.Register(api, huma.Operation{OperationID: "producer-batches", Method: http.MethodGet, Path: Prefix + "/producers/{key}/batches",
		Summary:     "One producer's outcome in each batch, with the evidence",
		Description: "The answer of `coordinator explain --format json` for the producer: its `batches` are the evidence rows, batches whose window ends in [from, to).",
		Tags:        tag, Errors: []int{http.StatusBadRequest, http.StatusNotFound}}, s.producerBatches)
	huma.Register(api, huma.Operation{OperationID: "batches", Method: http.MethodGet, Path: Prefix + "/batches",
		Summary: "Batches", Tags: []string{"batches"}, Errors: []int{http.StatusBadRequest}}, s.batches)
	huma.Register(api, huma.Operation{OperationID: "batch", Method: http.MethodGet, Path: Prefix + "/batches/{bot_log_id}",
		Summary: "One batch", Tags: []string{"batches"}, Errors: []int{http.StatusBadRequest, http.StatusNotFound}}, s.batch)
	huma.Register(api, huma.Operation{OperationID: "stream", Method: http.MethodGet, Path: Prefix + "/stream",
		Summary:     "Server-Sent Events: one batch event per committed batch",
		Description: "Each event has `event: batch`, `id:` the bot_log_id and as data the batch summary with the outcome of each producer asked for. Reconnect with Last-Event-ID to get the batches missed in between. Comments (`: heartbeat`) keep the connection alive.",
		Tags:        []string{"batches"}, Errors: []int{http.StatusBadRequest},
		Responses: map[string]*huma.Response{"200": {Description: "An event stream", Content: map[string]*huma.MediaType{
			"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}}}}, s.stream)
	huma.Register(api, huma.Operation{OperationID: "uptimescore", Method: http.MethodGet, Path: "/uptimescore/{pubkey}/{dataType}/{scoreAt}/",
		Summary:     "The existing leaderboard API's scores",
		Description: "Same response as the existing leaderboard API: a list of {block_producer_key, score, score_percent} with string values, or {Error, Error_message} with status 404.",
		Tags:        []string{"legacy"}}, s.uptimescore)
	for _, r := range more {
		r(api)
	}
	// Bad parameters are answered 400 (see newError): say so in the document.
	oapi := api.OpenAPI()
	for _, item := range oapi.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			if r, ok := op.Responses["422"]; ok {
				delete(op.Responses, "422")
				if _, ok := op.Responses["400"]; !ok {
					op.Responses["400"] = r
				}
			}
		}
	}
}

// Handler serves the API: ?format=csv|json on any API path means
// Accept: text/csv|application/json.
func Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, Prefix+"/") {
			switch r.URL.Query().Get("format") {
			case "csv":
				r.Header.Set("Accept", "text/csv")
			case "json":
				r.Header.Set("Accept", "application/json")
			}
		}
		next.ServeHTTP(w, r)
	})
}

func init() {
	// Request validation failures are the client's fault: 400, and the
	// detail names every bad parameter. Errors are always problem+json,
	// whatever representation was asked for.
	huma.NewErrorWithContext = func(_ huma.Context, status int, msg string, errs ...error) huma.StatusError {
		return newError(status, msg, errs...)
	}
	huma.NewError = newError
}

type problem struct{ huma.ErrorModel }

func (p *problem) ContentType(string) string { return "application/problem+json" }

func newError(status int, msg string, errs ...error) huma.StatusError {
	if status == http.StatusUnprocessableEntity {
		status = http.StatusBadRequest
	}
	p := &problem{huma.ErrorModel{Status: status, Title: http.StatusText(status), Detail: msg}}
	var named []string
	for _, e := range errs {
		if e == nil {
			continue
		}
		d := &huma.ErrorDetail{Message: e.Error()}
		if dd, ok := e.(huma.ErrorDetailer); ok {
			d = dd.ErrorDetail()
		}
		p.Errors = append(p.Errors, d)
		named = append(named, strings.TrimSpace(d.Location+": "+d.Message))
	}
	if len(named) > 0 && (msg == "validation failed" || msg == "") {
		p.Detail = "bad request: " + strings.Join(named, "; ")
	}
	return p
}

func badParam(location string, value any, msg string) error {
	return huma.Error400BadRequest("bad request: "+location+": "+msg, &huma.ErrorDetail{Location: location, Value: value, Message: msg})
}

// fail turns a reader error into the API's error.
func (s *Server) fail(ctx context.Context, err error) error {
	if IsNotFound(err) {
		return huma.Error404NotFound(err.Error())
	}
	if ctx.Err() != nil {
		return huma.NewError(499, "client closed request")
	}
	s.logger().Error("read API query failed", "err", err)
	return huma.Error500InternalServerError("reading the database failed")
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// CacheParams are the inputs of every cacheable read.
type CacheParams struct {
	conditional.Params
	Accept string `header:"Accept" doc:"application/json (default) or text/csv"`
}

// etag derives the entity tag from the latest batch and the representation.
func (c *CacheParams) etag(l Latest) string {
	kind := "json"
	if strings.Contains(c.Accept, "csv") {
		kind = "csv"
	}
	return l.ETag() + "-" + kind
}

// check answers 304 when the client's copy is current.
func (c *CacheParams) check(l Latest) (CacheHeaders, error) {
	h := c.headers(l)
	if c.HasConditionalParams() {
		if err := c.PreconditionFailed(c.etag(l), l.End); err != nil {
			return h, err
		}
	}
	return h, nil
}

// headers are the validators of a response as of the batch l.
func (c *CacheParams) headers(l Latest) CacheHeaders {
	h := CacheHeaders{ETag: `"` + c.etag(l) + `"`, Vary: "Accept", CacheControl: "no-cache"}
	if l.ID != 0 {
		h.LastModified = l.End
	}
	return h
}

// CacheHeaders are the validators of every cacheable read: the ETag and
// Last-Modified of the latest batch.
type CacheHeaders struct {
	ETag         string    `header:"ETag"`
	LastModified time.Time `header:"Last-Modified"`
	CacheControl string    `header:"Cache-Control"`
	Vary         string    `header:"Vary"`
}

// FormatParam selects CSV for a list.
type FormatParam struct {
	Format string `query:"format" enum:"json,csv" doc:"csv: the list as CSV (same as Accept: text/csv)"`
}

// clamp bounds a limit to [0, max], defaulting to def.
func clamp(limit, def, max int) int {
	switch {
	case limit == 0:
		return def
	case limit > max:
		return max
	}
	return limit
}

// current reads the latest batch and its cache validators, and answers 304
// when the client's copy is current: how every cacheable read begins.
func (s *Server) current(ctx context.Context, c *CacheParams) (Latest, CacheHeaders, error) {
	l, err := s.Reader.Latest(ctx)
	if err != nil {
		return Latest{}, CacheHeaders{}, s.fail(ctx, err)
	}
	h, err := c.check(l)
	return l, h, err
}

// timeRange parses the from and to query parameters: to defaults to def,
// from to span before to, and from may not be after to.
func timeRange(fromParam, toParam string, def time.Time, span time.Duration) (from, to time.Time, err error) {
	if to, err = timeParam("to", toParam, def); err != nil {
		return from, to, err
	}
	if from, err = timeParam("from", fromParam, to.Add(-span)); err != nil {
		return from, to, err
	}
	if from.After(to) {
		return from, to, badParam("query.from", fromParam, "from is after to")
	}
	return from, to, nil
}

// timeParam parses an RFC 3339 time query parameter.
func timeParam(name, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badParam("query."+name, v, "expected an RFC 3339 time such as 2024-06-01T00:00:00Z")
	}
	return t.UTC(), nil
}

// LeaderboardItem is one line of the leaderboard.
type LeaderboardItem struct {
	Rank              int      `json:"rank"`
	Producer          string   `json:"producer"`
	Points            int      `json:"points"`
	ScorePercent      *float64 `json:"score_percent"`
	ApplicationStatus *bool    `json:"application_status"`
}

// Leaderboard is the leaderboard response.
type Leaderboard struct {
	Window  string            `json:"window"`
	AsOf    *time.Time        `json:"as_of" doc:"End of the latest batch (null before the first)"`
	Surveys int               `json:"surveys" doc:"Batches in the window"`
	Total   int               `json:"total" doc:"Producers matching the filters"`
	Items   []LeaderboardItem `json:"items"`
}

type leaderboardInput struct {
	CacheParams
	FormatParam
	Window            string `query:"window" doc:"24h, 7d, 30d, 90d or Nd (N days); default UPTIME_DAYS_FOR_SCORE days" example:"90d"`
	Limit             int    `query:"limit" minimum:"0" default:"100" doc:"Page size (at most 1000; larger values are clamped)"`
	Offset            int    `query:"offset" minimum:"0" default:"0"`
	ApplicationStatus string `query:"application_status" enum:"true,false,any" default:"any" doc:"false: not true (false or unknown)"`
	Search            string `query:"search" maxLength:"55" doc:"Only producers whose key contains this text"`
}

type leaderboardOutput struct {
	CacheHeaders
	Body *Leaderboard
}

// Page filters and pages a leaderboard; ranks count within the filter.
func (b *Board) Page(window, status, search string, offset, limit int) *Leaderboard {
	out := &Leaderboard{Window: window, Surveys: b.Surveys, Items: []LeaderboardItem{}}
	if b.Batch.ID != 0 {
		out.AsOf = &b.Batch.End
	}
	for _, row := range b.Rows {
		switch status {
		case "true":
			if row.ApplicationStatus == nil || !*row.ApplicationStatus {
				continue
			}
		case "false":
			if row.ApplicationStatus != nil && *row.ApplicationStatus {
				continue
			}
		}
		if search != "" && !strings.Contains(row.Producer, search) {
			continue
		}
		out.Total++
		if out.Total > offset && len(out.Items) < limit {
			out.Items = append(out.Items, LeaderboardItem{Rank: out.Total, Producer: row.Producer, Points: row.Points,
				ScorePercent: row.ScorePercent, ApplicationStatus: row.ApplicationStatus})
		}
	}
	return out
}

func (s *Server) defaultWindow() string { return WindowName(s.Reader.UptimeDays) }

func (s *Server) leaderboard(ctx context.Context, in *leaderboardInput) (*leaderboardOutput, error) {
	window := in.Window
	if window == "" {
		window = s.defaultWindow()
	}
	days, err := ParseWindow(window)
	if err != nil {
		return nil, badParam("query.window", in.Window, err.Error())
	}
	l, h, err := s.current(ctx, &in.CacheParams)
	if err != nil {
		return nil, err
	}
	b, err := s.Reader.LeaderboardAt(ctx, days, l)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if b.Batch != l { // a batch landed meanwhile: the validators are the board's
		h = in.headers(b.Batch)
	}
	return &leaderboardOutput{CacheHeaders: h, Body: b.Page(WindowName(days), in.ApplicationStatus, in.Search, in.Offset, clamp(in.Limit, 100, MaxLimit))}, nil
}

// KeyParam is a producer key in the path.
type KeyParam struct {
	Key string `path:"key" doc:"Block producer public key (B62…, 55 characters)" example:"B62qrPN5Y5yq8kGE3FbVKbGTdTAJNdtNtB5sNVpxyRwWGcDEhpMzc8g"`
}

func (k *KeyParam) validate() error {
	if !ValidKey(k.Key) {
		return badParam("path.key", k.Key, "expected a Mina public key: B62 followed by 52 base58 characters")
	}
	return nil
}

type producerInput struct {
	CacheParams
	KeyParam
}

type producerOutput struct {
	CacheHeaders
	Body *Producer
}

func (s *Server) producer(ctx context.Context, in *producerInput) (*producerOutput, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	// One query reads the producer and the latest batch, its validators.
	p, err := s.Reader.Producer(ctx, in.Key)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	h, err := in.check(p.Batch())
	if err != nil {
		return nil, err
	}
	return &producerOutput{CacheHeaders: h, Body: p}, nil
}

// History is the history response.
type History struct {
	Producer string         `json:"producer"`
	From     time.Time      `json:"from"`
	To       time.Time      `json:"to"`
	Items    []HistoryPoint `json:"items"`
}

type historyInput struct {
	CacheParams
	FormatParam
	KeyParam
	From string `query:"from" doc:"RFC 3339; default: UPTIME_DAYS_FOR_SCORE days before to" format:"date-time"`
	To   string `query:"to" doc:"RFC 3339; default: the end of the latest batch" format:"date-time"`
}

type historyOutput struct {
	CacheHeaders
	Body *History
}

func (s *Server) history(ctx context.Context, in *historyInput) (*historyOutput, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	l, h, err := s.current(ctx, &in.CacheParams)
	if err != nil {
		return nil, err
	}
	from, to, err := timeRange(in.From, in.To, l.endOrNow(), time.Duration(s.Reader.UptimeDays)*24*time.Hour)
	if err != nil {
		return nil, err
	}
	items, err := s.Reader.History(ctx, in.Key, from, to, maxHistory)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if items == nil {
		items = []HistoryPoint{}
	}
	return &historyOutput{CacheHeaders: h, Body: &History{Producer: in.Key, From: from, To: to, Items: items}}, nil
}

// Batches is the batch list response.
type Batches struct {
	Items []Batch `json:"items"`
}

type batchesInput struct {
	CacheParams
	FormatParam
	From  string `query:"from" doc:"RFC 3339: batches ending at or after; default 24 hours before to" format:"date-time"`
	To    string `query:"to" doc:"RFC 3339: batches ending at or before; default the latest batch" format:"date-time"`
	Limit int    `query:"limit" minimum:"0" default:"100" doc:"At most this many, newest first (at most 1000; larger values are clamped)"`
}

type batchesOutput struct {
	CacheHeaders
	Body *Batches
}

func (s *Server) batches(ctx context.Context, in *batchesInput) (*batchesOutput, error) {
	l, h, err := s.current(ctx, &in.CacheParams)
	if err != nil {
		return nil, err
	}
	from, to, err := timeRange(in.From, in.To, l.endOrNow(), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	items, err := s.Reader.Batches(ctx, from, to, clamp(in.Limit, 100, MaxLimit))
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if items == nil {
		items = []Batch{}
	}
	return &batchesOutput{CacheHeaders: h, Body: &Batches{Items: items}}, nil
}

type batchInput struct {
	CacheParams
	ID int64 `path:"bot_log_id" minimum:"1" doc:"bot_logs.id"`
}

type batchOutput struct {
	CacheHeaders
	Body *Batch
}

func (s *Server) batch(ctx context.Context, in *batchInput) (*batchOutput, error) {
	_, h, err := s.current(ctx, &in.CacheParams)
	if err != nil {
		return nil, err
	}
	b, err := s.Reader.Batch(ctx, in.ID)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return &batchOutput{CacheHeaders: h, Body: b}, nil
}

type uptimescoreInput struct {
	PubKey   string `path:"pubkey" doc:"Block producer public key (B62…, 55 characters)"`
	DataType string `path:"dataType" doc:"snarkwork"`
	ScoreAt  string `path:"scoreAt" doc:"current, or a time as 2022-04-30T08:30:00Z"`
}

// legacyError is the existing API's error body.
type legacyError struct {
	Error        string `json:"Error"`
	ErrorMessage string `json:"Error_message"`
}

// legacyParamError is the existing API's answer to a query string.
type legacyParamError struct {
	Error        string `json:"error"`
	ErrorMessage string `json:"error_message"`
}

type uptimescoreOutput struct {
	Status int
	Body   any
}

func legacyFail(status int, title, msg string) *uptimescoreOutput {
	return &uptimescoreOutput{Status: status, Body: legacyError{Error: title, ErrorMessage: msg}}
}

func (s *Server) uptimescore(ctx context.Context, in *uptimescoreInput) (*uptimescoreOutput, error) {
	hctx, _ := ctx.Value(humaContextKey{}).(huma.Context)
	if hctx != nil && hctx.URL().RawQuery != "" {
		return &uptimescoreOutput{Status: http.StatusBadRequest, Body: legacyParamError{Error: "Query parameters are not allowed",
			ErrorMessage: "This application does not support query parameters in requests."}}, nil
	}
	// As the existing API: "snarkwork" in the key's place means everyone,
	// and shifts the date into the data type's place.
	key, dataType, scoreAt := "", in.DataType, in.ScoreAt
	switch {
	case strings.HasPrefix(in.PubKey, "B62") && len(in.PubKey) == 55:
		key = in.PubKey
	case in.PubKey == "snarkwork":
		if dataType != "snarkwork" {
			scoreAt = dataType
		}
		dataType = in.PubKey
	default:
		return legacyFail(http.StatusNotFound, "Invalid public key", "Please provide correct public key"), nil
	}
	var at *time.Time
	if scoreAt != "current" {
		t, err := time.Parse("2006-01-02T15:04:05Z", scoreAt)
		if err != nil {
			return legacyFail(http.StatusNotFound, "Invalid Date Format", "Please make sure you use Valid Date in Format:2022-04-30T08:30:00Z"), nil
		}
		at = &t
	}
	if dataType != "snarkwork" {
		return legacyFail(http.StatusNotFound, "Invalid datatype", "Please provide datatype as snarkwork"), nil
	}
	scores, err := s.Reader.LegacyScores(ctx, key, at)
	if err != nil {
		if ctx.Err() == nil {
			s.logger().Error("read API query failed", "err", err)
		}
		return legacyFail(http.StatusInternalServerError, "Something went wrong", "System is down. Please try again later."), nil
	}
	if len(scores) == 0 {
		return legacyFail(http.StatusNotFound, "No data found", "Please try again with different parameters"), nil
	}
	return &uptimescoreOutput{Status: http.StatusOK, Body: legacyScores(scores)}, nil
}

type humaContextKey struct{}

// withHumaContext makes the huma context reachable from handlers that need
// the raw request.
func withHumaContext(ctx huma.Context, next func(huma.Context)) {
	next(huma.WithValue(ctx, humaContextKey{}, ctx))
}

// maxEvidenceRange bounds the range of the producer batches endpoint.
const maxEvidenceRange = 31 * 24 * time.Hour

// ProducerBatches is the producer batches response: coordinator explain's
// JSON answer.
type ProducerBatches inspect.Explanation

type producerBatchesInput struct {
	CacheParams
	FormatParam
	KeyParam
	From string `query:"from" doc:"RFC 3339: batches whose window ends at or after; default 24 hours before to" format:"date-time"`
	To   string `query:"to" doc:"RFC 3339: batches whose window ends before; default now" format:"date-time"`
}

type producerBatchesOutput struct {
	CacheHeaders
	Body *ProducerBatches
}

func (s *Server) producerBatches(ctx context.Context, in *producerBatchesInput) (*producerBatchesOutput, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	_, h, err := s.current(ctx, &in.CacheParams)
	if err != nil {
		return nil, err
	}
	from, to, err := timeRange(in.From, in.To, time.Now().UTC(), inspect.DefaultRange)
	if err != nil {
		return nil, err
	}
	if from.Equal(to) {
		return nil, badParam("query.from", in.From, "from is not before to")
	}
	if to.Sub(from) > maxEvidenceRange {
		return nil, badParam("query.from", in.From, "the range is longer than 31 days")
	}
	ex, err := s.Reader.ProducerBatches(ctx, in.Key, from, to)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return &producerBatchesOutput{CacheHeaders: h, Body: (*ProducerBatches)(ex)}, nil
}
