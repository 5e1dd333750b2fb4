package appstatus_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/appstatus"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	account     = "coordinator@uptime-test.iam.gserviceaccount.com"
	accessToken = "ya29.test-access-token"
	sheetName   = "Delegation Program Registrations"
	sheetID     = "1AbCdEfGhIjKlMnOp"
	firstTitle  = "Form Responses 1"
)

var testKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// google is just enough of Google's OAuth token endpoint and of the Drive
// and Sheets REST APIs, on 127.0.0.1. It checks the JWT the client signs
// with the service-account key.
type google struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	files       map[string]string // spreadsheet name -> id
	rows        [][]any           // values of the first worksheet
	tokenStatus int               // answer of the token endpoint (0: a token)
	valuesFail  int               // answer the next valuesFail reads with 500
	hits        map[string]int    // requests by endpoint
	queries     []string          // Drive search queries
}

func newGoogle(t *testing.T) *google {
	t.Helper()
	g := &google{t: t, files: map[string]string{sheetName: sheetID}, hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", g.token)
	mux.HandleFunc("GET /drive/v3/files", g.authorized(g.listFiles))
	mux.HandleFunc("GET /v4/spreadsheets/{id}", g.authorized(g.spreadsheet))
	mux.HandleFunc("GET /v4/spreadsheets/{id}/values/{range}", g.authorized(g.values))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *google) hit(name string) {
	g.mu.Lock()
	g.hits[name]++
	g.mu.Unlock()
}

func (g *google) count(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hits[name]
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg, "status": http.StatusText(code)}})
}

func (g *google) token(w http.ResponseWriter, r *http.Request) {
	g.hit("token")
	g.mu.Lock()
	status := g.tokenStatus
	g.mu.Unlock()
	if status != 0 {
		writeJSON(w, status, map[string]string{"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
		return
	}
	if err := r.ParseForm(); err != nil {
		g.t.Errorf("token request: %v", err)
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		g.t.Errorf("grant_type = %q", gt)
	}
	claims, err := verifyJWT(r.PostForm.Get("assertion"), &testKey.PublicKey)
	if err != nil {
		g.t.Errorf("token request: %v", err)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	scopes := strings.Fields(claims.Scope)
	if claims.Iss != account || claims.Aud != g.srv.URL+"/token" ||
		!slices.Contains(scopes, "https://www.googleapis.com/auth/spreadsheets.readonly") ||
		!slices.Contains(scopes, "https://www.googleapis.com/auth/drive.metadata.readonly") {
		g.t.Errorf("unexpected JWT claims %+v", claims)
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": accessToken, "token_type": "Bearer", "expires_in": 3600})
}

type jwtClaims struct {
	Iss, Scope, Aud string
	Exp, Iat        int64
}

func verifyJWT(token string, pub *rsa.PublicKey) (*jwtClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("assertion is not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return nil, errors.New("the JWT is not signed by the service-account key")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	if now := time.Now().Unix(); c.Iat > now+60 || c.Exp < now {
		return nil, errors.New("the JWT is not valid now")
	}
	return &c, nil
}

func (g *google) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+accessToken {
			apiError(w, http.StatusUnauthorized, "Request had invalid authentication credentials.")
			return
		}
		h(w, r)
	}
}

var driveQuery = regexp.MustCompile(`^name = '((?:[^'\\]|\\.)*)' and mimeType = 'application/vnd\.google-apps\.spreadsheet' and trashed = false$`)

func (g *google) listFiles(w http.ResponseWriter, r *http.Request) {
	g.hit("drive")
	q := r.URL.Query().Get("q")
	g.mu.Lock()
	g.queries = append(g.queries, q)
	g.mu.Unlock()
	m := driveQuery.FindStringSubmatch(q)
	if m == nil {
		apiError(w, http.StatusBadRequest, "Invalid Value")
		return
	}
	name := regexp.MustCompile(`\\(.)`).ReplaceAllString(m[1], "$1")
	files := []map[string]string{}
	g.mu.Lock()
	if id, ok := g.files[name]; ok {
		files = append(files, map[string]string{"id": id, "name": name})
	}
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"files": files})
}

func (g *google) spreadsheet(w http.ResponseWriter, r *http.Request) {
	g.hit("spreadsheet")
	if r.PathValue("id") != sheetID {
		apiError(w, http.StatusNotFound, "Requested entity was not found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sheets": []any{
		map[string]any{"properties": map[string]any{"sheetId": 0, "title": firstTitle, "index": 0}},
		map[string]any{"properties": map[string]any{"sheetId": 7, "title": "Notes", "index": 1}},
	}})
}

func (g *google) values(w http.ResponseWriter, r *http.Request) {
	g.hit("values")
	g.mu.Lock()
	fail := g.valuesFail > 0
	if fail {
		g.valuesFail--
	}
	rows := g.rows
	g.mu.Unlock()
	if fail {
		apiError(w, http.StatusInternalServerError, "Internal error encountered.")
		return
	}
	if rg := r.PathValue("range"); r.PathValue("id") != sheetID || rg != "'"+firstTitle+"'" {
		apiError(w, http.StatusBadRequest, "Unable to parse range: "+rg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"range": "'" + firstTitle + "'!A1:Z100", "majorDimension": "ROWS", "values": rows})
}

// keyFile writes a service-account key whose token_uri is the fake server.
func (g *google) keyFile(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "uptime-test",
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   account,
		"client_id":      "1234567890",
		"auth_uri":       g.srv.URL + "/auth",
		"token_uri":      g.srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, key)
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (g *google) sheet(name, keyFile string) *appstatus.Sheet {
	return appstatus.NewSheet(name, keyFile, appstatus.WithEndpoint(g.srv.URL), appstatus.WithHTTPClient(g.srv.Client()))
}

var header = []any{"Timestamp", "Full name", "Discord ID", "E-mail", "Block producer public key", "Country"}

func TestContacts(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	g.rows = [][]any{
		header,
		{"1/2/2024 10:00:00", "Alice", " alice#0001 ", "alice@example.org ", "  B62qAAA  ", "FR"},
		{"1/2/2024 11:00:00", "No key", "nokey#1", "nokey@example.org", "   "},
		{"1/2/2024 12:00:00", "Short row", "bob#2", "bob@example.org", "B62qBBB"},
		{},
		{"1/2/2024 13:00:00", "Only name"},
		{"1/2/2024 14:00:00", "Numbers", 123456789.0, `o"quote@example.org`, "B62qCCC", "extra", "beyond the header"},
	}
	got, err := g.sheet(sheetName, g.keyFile(t)).Contacts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []appstatus.Contact{
		{DiscordID: "alice#0001", Email: "alice@example.org", BlockProducerKey: "B62qAAA"},
		{DiscordID: "bob#2", Email: "bob@example.org", BlockProducerKey: "B62qBBB"},
		{DiscordID: "123456789", Email: `o"quote@example.org`, BlockProducerKey: "B62qCCC"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Contacts =\n%+v\nwant\n%+v", got, want)
	}
	if g.count("token") != 1 {
		t.Errorf("token requests: %d, want 1", g.count("token"))
	}
}

func TestContactsSheetNameIsEscaped(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	name := `O'Brien's \ registrations`
	g.files = map[string]string{name: sheetID}
	g.rows = [][]any{header}
	got, err := g.sheet(name, g.keyFile(t)).Contacts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("a header-only sheet gave %v", got)
	}
	g.mu.Lock()
	queries := g.queries
	g.mu.Unlock()
	if want := `name = 'O\'Brien\'s \\ registrations' and mimeType = 'application/vnd.google-apps.spreadsheet' and trashed = false`; len(queries) != 1 || queries[0] != want {
		t.Errorf("Drive queries %q, want [%q]", queries, want)
	}
}

func TestContactsTooFewColumns(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	g.rows = [][]any{{"Timestamp", "Name", "Discord"}, {"x", "y", "z"}}
	_, err := g.sheet(sheetName, g.keyFile(t)).Contacts(context.Background())
	if err == nil || !strings.Contains(err.Error(), "header row has 3 columns") || !appstatus.IsPermanent(err) {
		t.Fatalf("Contacts = %v, want a permanent error about the header's 3 columns", err)
	}
}

func TestMissingSpreadsheet(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	u := &appstatus.Updater{Source: g.sheet("No Such Sheet", g.keyFile(t)), Attempts: 3, Backoff: time.Millisecond}
	err := u.BeforeBatch(context.Background())
	if !errors.Is(err, appstatus.ErrNotFound) {
		t.Fatalf("BeforeBatch = %v, want ErrNotFound", err)
	}
	t.Log(err)
	for _, want := range []string{`"No Such Sheet"`, account, "shared"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if n := g.count("drive"); n != 1 {
		t.Errorf("searched Drive %d times; a missing sheet is not retried", n)
	}
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	good := g.keyFile(t)
	keyJSON, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]string
	if err := json.Unmarshal(keyJSON, &fields); err != nil {
		t.Fatal(err)
	}
	fields["private_key"] = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
	badPEM, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		want       string
	}{
		{"malformed JSON", writeFile(t, []byte(`{"type": "service_account", "private_key": "-----BEGIN`)), "not a valid service-account JSON key"},
		{"not a service account", writeFile(t, []byte(`{"type": "authorized_user", "client_id": "x"}`)), `'type' field is "authorized_user"`},
		{"broken private key", writeFile(t, badPEM), "private_key: not a PKCS#8 or PKCS#1 private key"},
		{"missing file", filepath.Join(t.TempDir(), "nope.json"), "reading the service-account key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.sheet(sheetName, tc.file).Contacts(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !appstatus.IsPermanent(err) {
				t.Fatalf("Contacts = %v; want a permanent error with %q", err, tc.want)
			}
		})
	}
	if n := g.count("token") + g.count("drive"); n != 0 {
		t.Errorf("%d requests were made with unusable keys", n)
	}
}

func TestTokenRefused(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	g.tokenStatus = http.StatusUnauthorized
	u := &appstatus.Updater{Source: g.sheet(sheetName, g.keyFile(t)), Attempts: 3, Backoff: time.Millisecond}
	err := u.BeforeBatch(context.Background())
	if err == nil {
		t.Fatal("BeforeBatch succeeded with a refused key")
	}
	t.Log(err)
	for _, want := range []string{"authenticating as " + account, "invalid_grant"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := g.count("token"); n != 1 {
		t.Errorf("token requests: %d; a refused key is not retried", n)
	}
	if n := g.count("drive"); n != 0 {
		t.Errorf("Drive was called %d times without a token", n)
	}
}

func TestUpdaterUpdatesNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	if _, err := pool.Exec(ctx, `INSERT INTO nodes (block_producer_key) VALUES ('B62qAAA'), ('B62qBBB'), ('B62qZZZ')`); err != nil {
		t.Fatal(err)
	}
	g := newGoogle(t)
	g.rows = [][]any{
		header,
		{"t", "Alice", "alice#1", "alice@example.org", "B62qAAA"},
		{"t", "Bob", "bob#1", "bob-old@example.org", "B62qBBB"},
		{"t", "Bob again", "bob#2", "bob@example.org", "B62qBBB"},
		{"t", "Not a node", "x", "x@example.org", "B62qNOPE"},
	}
	g.valuesFail = 1 // the first read fails with 500
	u := &appstatus.Updater{Source: g.sheet(sheetName, g.keyFile(t)), Pool: pool, Attempts: 3, Backoff: 10 * time.Millisecond}
	if err := u.BeforeBatch(ctx); err != nil {
		t.Fatalf("BeforeBatch: %v", err)
	}
	if n := g.count("values"); n != 2 {
		t.Errorf("read the values %d times, want 2 (a 500, then success)", n)
	}
	rows, err := pool.Query(ctx, `SELECT block_producer_key, coalesce(application_status, false), coalesce(discord_id, ''), coalesce(email_id, '') FROM nodes ORDER BY block_producer_key`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var key, discord, email string
		var status bool
		if err := rows.Scan(&key, &status, &discord, &email); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{key, map[bool]string{true: "applied", false: "-"}[status], discord, email}, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"B62qAAA applied alice#1 alice@example.org",
		"B62qBBB applied bob#2 bob@example.org",
		"B62qZZZ -  ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("nodes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUpdaterGivesUpAfterRetries(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	g.rows = [][]any{header}
	g.valuesFail = 100
	u := &appstatus.Updater{Source: g.sheet(sheetName, g.keyFile(t)), Attempts: 3, Backoff: time.Millisecond}
	err := u.BeforeBatch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "try 3 of 3") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("BeforeBatch = %v, want the 500 after 3 tries", err)
	}
	t.Log(err)
	if n := g.count("values"); n != 3 {
		t.Errorf("read the values %d times, want 3", n)
	}
}

// TestMissingSettingsFailEachUpdate: without SPREADSHEET_NAME or
// SPREADSHEET_CREDENTIALS_JSON the update fails at once with an error naming
// the variable (logged by the engine at every batch), contacting nobody.
func TestMissingSettingsFailEachUpdate(t *testing.T) {
	t.Parallel()
	g := newGoogle(t)
	for _, tc := range []struct{ name, key, want string }{
		{"", g.keyFile(t), "SPREADSHEET_NAME is not set"},
		{sheetName, "", "SPREADSHEET_CREDENTIALS_JSON is not set"},
	} {
		u := &appstatus.Updater{Source: g.sheet(tc.name, tc.key), Attempts: 3, Backoff: time.Millisecond}
		err := u.BeforeBatch(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "try 1 of 3") {
			t.Errorf("BeforeBatch with name %q, key %q = %v, want %q on the first try", tc.name, tc.key, err, tc.want)
		}
	}
	if n := g.count("token") + g.count("drive"); n != 0 {
		t.Errorf("%d requests to Google without the settings", n)
	}
}
