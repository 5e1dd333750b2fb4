// Package appstatus is the application status update: it reads the block
// producers' registrations from the first worksheet of a Google Spreadsheet
// and marks the matching nodes as applied, with their Discord id and e-mail.
package appstatus

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/api/sheets/v4"

	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// Contact is one registration: Discord id, e-mail and block producer key.
type Contact = postgres.Contact

// Spreadsheet columns, 0-based, as the original reads them.
const (
	colDiscord = 2
	colEmail   = 3
	colKey     = 4
)

// spreadsheetMIME is the Drive MIME type of a Google Sheets file.
const spreadsheetMIME = "application/vnd.google-apps.spreadsheet"

// scopes are read-only: the update never writes to Google.
var scopes = []string{drive.DriveMetadataReadonlyScope, sheets.SpreadsheetsReadonlyScope}

// ErrNotFound is returned when no spreadsheet has the configured name.
var ErrNotFound = errors.New("spreadsheet not found")

// Sheet reads the registrations from a spreadsheet found by name with a
// service-account key.
type Sheet struct {
	name    string
	keyFile string
	client  *http.Client // base client: token requests and API calls
	drive   string       // endpoint overrides ("" = Google's)
	sheets  string
}

// Option configures a Sheet.
type Option func(*Sheet)

// WithEndpoint sends every API call to base instead of Google: Drive at
// base/drive/v3/ and Sheets at base/ (tests and proxies). The token endpoint
// is the key's token_uri.
func WithEndpoint(base string) Option {
	base = strings.TrimSuffix(base, "/")
	return func(s *Sheet) {
		s.drive = base + "/drive/v3/"
		s.sheets = base + "/"
	}
}

// WithHTTPClient sets the HTTP client that carries token requests and API
// calls (authorization is added on top of its transport).
func WithHTTPClient(c *http.Client) Option { return func(s *Sheet) { s.client = c } }

// NewSheet returns a reader of the spreadsheet called name, authenticating
// with the service-account key in the file keyFile. Nothing is read before
// Contacts, so a key fixed on disk is picked up at the next call.
func NewSheet(name, keyFile string, opts ...Option) *Sheet {
	s := &Sheet{name: name, keyFile: keyFile, client: http.DefaultClient}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Contacts reads the registrations: the records of the first worksheet (the
// first row is the header), taking the 3rd, 4th and 5th columns as Discord
// id, e-mail and block producer key, with spaces trimmed. Rows without a key
// are skipped.
func (s *Sheet) Contacts(ctx context.Context) ([]Contact, error) {
	// Missing settings fail every update, loudly, but never stop scoring
	// (the original logged the same failure at every batch).
	if s.name == "" {
		return nil, permanent(errors.New("SPREADSHEET_NAME is not set: the application status cannot be read (set it, or IGNORE_APPLICATION_STATUS=1 to skip the update)"))
	}
	if s.keyFile == "" {
		return nil, permanent(errors.New("SPREADSHEET_CREDENTIALS_JSON is not set: the application status cannot be read (set it to the service-account key file, or IGNORE_APPLICATION_STATUS=1 to skip the update)"))
	}
	client, email, err := s.authorize(ctx)
	if err != nil {
		return nil, err
	}
	driveOpts := []option.ClientOption{option.WithHTTPClient(client)}
	sheetsOpts := []option.ClientOption{option.WithHTTPClient(client)}
	if s.drive != "" {
		driveOpts = append(driveOpts, option.WithEndpoint(s.drive))
		sheetsOpts = append(sheetsOpts, option.WithEndpoint(s.sheets))
	}
	drv, err := drive.NewService(ctx, driveOpts...)
	if err != nil {
		return nil, fmt.Errorf("creating the Drive client: %w", err)
	}
	sh, err := sheets.NewService(ctx, sheetsOpts...)
	if err != nil {
		return nil, fmt.Errorf("creating the Sheets client: %w", err)
	}

	id, err := s.find(ctx, drv, email)
	if err != nil {
		return nil, err
	}
	meta, err := sh.Spreadsheets.Get(id).Fields("sheets.properties(sheetId,title,index)").Context(ctx).Do()
	if err != nil {
		return nil, apiError(fmt.Sprintf("reading the worksheets of spreadsheet %q", s.name), err)
	}
	if len(meta.Sheets) == 0 || meta.Sheets[0].Properties == nil {
		return nil, permanent(fmt.Errorf("spreadsheet %q has no worksheet", s.name))
	}
	title := meta.Sheets[0].Properties.Title
	vr, err := sh.Spreadsheets.Values.Get(id, quoteSheet(title)).MajorDimension("ROWS").Context(ctx).Do()
	if err != nil {
		return nil, apiError(fmt.Sprintf("reading worksheet %q of spreadsheet %q", title, s.name), err)
	}
	contacts, err := records(vr.Values)
	if err != nil {
		return nil, permanent(fmt.Errorf("worksheet %q of spreadsheet %q: %w", title, s.name, err))
	}
	return contacts, nil
}

// authorize reads the key and fetches an access token, so that key and
// authentication problems show as such rather than as API failures. It
// returns the authorized client and the service account's e-mail.
func (s *Sheet) authorize(ctx context.Context) (*http.Client, string, error) {
	key, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, "", permanent(fmt.Errorf("reading the service-account key: %w", err))
	}
	cfg, err := google.JWTConfigFromJSON(key, scopes...)
	if err != nil {
		return nil, "", permanent(fmt.Errorf("service-account key %s: not a valid service-account JSON key: %w", s.keyFile, err))
	}
	if cfg.Email == "" || len(cfg.PrivateKey) == 0 {
		return nil, "", permanent(fmt.Errorf("service-account key %s: client_email or private_key is missing", s.keyFile))
	}
	if err := checkPrivateKey(cfg.PrivateKey); err != nil {
		return nil, "", permanent(fmt.Errorf("service-account key %s: private_key: %w", s.keyFile, err))
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	ts := cfg.TokenSource(ctx)
	if _, err := ts.Token(); err != nil {
		err = fmt.Errorf("authenticating as %s at %s: %w", cfg.Email, cfg.TokenURL, err)
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && !retryableStatus(re.Response.StatusCode) {
			return nil, "", permanent(err) // the key was refused
		}
		return nil, "", err
	}
	return oauth2.NewClient(ctx, ts), cfg.Email, nil
}

// checkPrivateKey checks that key is a PEM-encoded RSA key, as the JWT flow
// needs, so that a broken key is reported as such.
func checkPrivateKey(key []byte) error {
	block, _ := pem.Decode(key)
	if block == nil {
		return errors.New("not PEM-encoded")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return fmt.Errorf("not a PKCS#8 or PKCS#1 private key: %w", err)
		}
		return nil
	}
	if _, ok := k.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("a %T, not an RSA key", k)
	}
	return nil
}

// find returns the id of the spreadsheet called s.name.
func (s *Sheet) find(ctx context.Context, drv *drive.Service, account string) (string, error) {
	q := fmt.Sprintf("name = '%s' and mimeType = '%s' and trashed = false", escapeQuery(s.name), spreadsheetMIME)
	list, err := drv.Files.List().Q(q).Fields("files(id,name)").PageSize(10).
		SupportsAllDrives(true).IncludeItemsFromAllDrives(true).Context(ctx).Do()
	if err != nil {
		return "", apiError(fmt.Sprintf("searching Drive for spreadsheet %q", s.name), err)
	}
	for _, f := range list.Files {
		if f.Name == s.name && f.Id != "" {
			return f.Id, nil
		}
	}
	return "", permanent(fmt.Errorf("%w: no spreadsheet named %q is visible to %s (is it shared with that service account?)", ErrNotFound, s.name, account))
}

// records turns the worksheet's rows into contacts, as gspread's
// get_all_records followed by columns 3 to 5 does.
func records(rows [][]any) ([]Contact, error) {
	if len(rows) == 0 {
		return nil, errors.New("the worksheet is empty; expected a header row and one row per registration")
	}
	if n := len(rows[0]); n <= colKey {
		return nil, fmt.Errorf("the header row has %d columns; expected at least %d (Discord id, e-mail and block producer key in columns %d to %d)",
			n, colKey+1, colDiscord+1, colKey+1)
	}
	var out []Contact
	for _, row := range rows[1:] {
		c := Contact{DiscordID: cell(row, colDiscord), Email: cell(row, colEmail), BlockProducerKey: cell(row, colKey)}
		if c.BlockProducerKey == "" {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func cell(row []any, i int) string {
	if i >= len(row) || row[i] == nil {
		return ""
	}
	switch v := row[i].(type) {
	case string:
		return strings.TrimSpace(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	default:
		return strings.TrimSpace(fmt.Sprint(v))
	}
}

// quoteSheet makes a worksheet title an A1 range covering the whole sheet.
func quoteSheet(title string) string {
	return "'" + strings.ReplaceAll(title, "'", "''") + "'"
}

// escapeQuery escapes a string literal of a Drive search query.
func escapeQuery(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

// apiError wraps an API failure; client errors other than 429 will not go
// away by retrying.
func apiError(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && !retryableStatus(gerr.Code) {
		return permanent(err)
	}
	return err
}

func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500
}

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err is a failure that retrying cannot fix: a
// bad or rejected key, a missing or malformed spreadsheet, a refused call.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
