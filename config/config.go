// Package config reads and validates the coordinator's environment once, at
// start-up: it is the only package that reads the environment. Every
// variable is registered in Vars (name, default, secrecy, group, doc); the
// configuration is a struct per section (Runtime, Postgres, Cassandra,
// Workers, Kubernetes, Alerts, AppStatus, HTTP, Log), each with its own
// loader. Every problem is collected and reported together, one line per
// variable, naming the variable, what is wrong and what is expected.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/delegation-program/uptime-coordinator/workers"
)

// Storage names, as SUBMISSION_STORAGE spells them.
const (
	StoragePostgres  = "POSTGRES"
	StorageCassandra = "CASSANDRA"
)

// Config is the validated configuration of "coordinator run".
type Config struct {
	Runtime    Runtime
	Postgres   Postgres
	Cassandra  Cassandra
	Workers    Workers
	Kubernetes Kubernetes
	Alerts     Alerts
	AppStatus  AppStatus
	HTTP       HTTP
	Log        Log

	// raw keeps every registered variable as read, for masked logging.
	raw map[string]string
}

// LoadDotEnv loads a .env file (path "" means ".env") into the process
// environment. Variables already set in the environment win. A missing file
// is not an error; a malformed one is.
func LoadDotEnv(path string) error {
	if path == "" {
		path = ".env"
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	vars, err := godotenv.UnmarshalBytes(data)
	if err != nil {
		// The parser's message quotes the text (a password, maybe): name the
		// line and the variable instead, never the value.
		return &Error{Problems: []string{dotEnvProblem(path, data)}}
	}
	for k, v := range vars {
		if _, set := os.LookupEnv(k); !set {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("%s: setting %s: %w", path, k, err)
			}
		}
	}
	return nil
}

// dotEnvProblem finds the first line of a malformed .env file that does not
// parse on its own and describes it without its value.
func dotEnvProblem(path string, data []byte) string {
	for i, line := range strings.Split(string(data), "\n") {
		if _, err := godotenv.Unmarshal(line + "\n"); err == nil {
			continue
		}
		name, _, found := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "export "), "=")
		name = strings.TrimSpace(name)
		if !found || !validName(name) {
			return fmt.Sprintf("%s: line %d is malformed (no NAME=value; text hidden, it may hold a secret)", path, i+1)
		}
		return fmt.Sprintf("%s: line %d (%s): malformed value (value hidden; check its quotes)", path, i+1, name)
	}
	return fmt.Sprintf("%s: malformed (values hidden; check quotes spanning lines)", path)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && !(r >= 'A' && r <= 'Z') && !(r >= 'a' && r <= 'z') && !(i > 0 && r >= '0' && r <= '9') && r != '.' {
			return false
		}
	}
	return true
}

// Environment is the process environment as the loaders take it.
func Environment(name string) (string, bool) { return os.LookupEnv(name) }

// FromEnv loads the configuration from the process environment.
func FromEnv() (*Config, error) { return Load(Environment) }

// Load builds and validates the configuration from lookup. The error, when
// not nil, lists every problem found, one per line.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	l := newLoader(lookup)
	c := &Config{raw: l.raw}
	c.Runtime = l.runtime()
	c.Workers = l.workers()
	c.Postgres = l.postgres()
	c.Kubernetes = l.kubernetes(c.Workers.Mode == workers.ModeKubernetes)
	c.Cassandra = l.cassandra()
	if c.Runtime.SubmissionStorage == StorageCassandra {
		l.requireCassandra(c.Cassandra)
	}
	c.Alerts = l.alerts()
	c.AppStatus = l.appStatus()
	c.HTTP = l.http()
	c.Log = l.log()
	if err := l.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Error lists every configuration problem found.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Truthy reports whether s is one of the original's truthy values ("1" or
// "true", case-insensitive).
func Truthy(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "1" || s == "true"
}

// minSecretLen is the shortest secret value masked in free text: masking
// every "1" of a log because a password is "1" would hide the log, not the
// password.
const minSecretLen = 4

// Secrets returns the values of every secret variable of the registry that
// is set (at least minSecretLen characters), longest first: what must never
// appear in a log line or an alert.
func (c *Config) Secrets() []string {
	var out []string
	for _, v := range Vars {
		if val := c.raw[v.Name]; v.Secret && len(val) >= minSecretLen {
			out = append(out, val)
			out = append(out, urlSecrets(val)...)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

// minTokenLen is the length from which a path segment of a secret URL is
// taken for a token of its own (Slack's webhook token is 24 characters).
const minTokenLen = 16

// urlSecrets returns the parts of a secret URL that are secrets by
// themselves: its path, query and password, and every path segment of at
// least minTokenLen characters (a webhook's token, printed alone).
func urlSecrets(val string) []string {
	u, err := url.Parse(val)
	if err != nil || u.Host == "" {
		return nil
	}
	var out []string
	if len(u.Path) >= minSecretLen && u.Path != "/" {
		out = append(out, u.Path)
	}
	if len(u.RawQuery) >= minSecretLen {
		out = append(out, u.RawQuery)
	}
	if p, ok := u.User.Password(); ok && len(p) >= minSecretLen {
		out = append(out, p)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if len(seg) >= minTokenLen {
			out = append(out, seg)
		}
	}
	return out
}

// SecretMasker returns a replacer that turns every secret value (and its
// JSON-escaped form) into "***".
func SecretMasker(secrets []string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		pairs = append(pairs, s, "***")
		if b, err := json.Marshal(s); err == nil {
			if esc := string(b[1 : len(b)-1]); esc != s {
				pairs = append(pairs, esc, "***")
			}
		}
	}
	return strings.NewReplacer(pairs...)
}

// LogValue renders the configuration for logs: every registered variable that
// is set, with secrets masked.
func (c *Config) LogValue() slog.Value { return maskedValue(c.raw) }

// maskedValue renders the variables read, in registry order, secrets masked.
func maskedValue(raw map[string]string) slog.Value {
	attrs := make([]slog.Attr, 0, len(raw))
	for _, v := range Vars {
		if val, ok := raw[v.Name]; ok {
			attrs = append(attrs, slog.String(v.Name, Mask(v.Name, val)))
		}
	}
	return slog.GroupValue(attrs...)
}

// Mask returns value as it may be logged: secrets become "***" (or "" when
// empty), everything else is unchanged.
func Mask(name, value string) string {
	v, ok := lookupVar(name)
	if ok && v.Secret && value != "" {
		return "***"
	}
	return value
}

func (l *loader) checkCassandraAuth(c Cassandra) {
	// Without a username SigV4 is used with the AWS SDK's default
	// credential chain (environment, web identity, shared config, container
	// and instance roles): no credentials set here is valid. Half-set pairs
	// are not.
	if (c.Username != "" || c.Password != "") && (c.Username == "" || c.Password == "") {
		l.errs = append(l.errs, "CASSANDRA_USERNAME / CASSANDRA_PASSWORD: only one is set; password authentication needs both")
	}
	if (c.AWSAccessKeyID != "" || c.AWSSecretAccessKey != "") && (c.AWSAccessKeyID == "" || c.AWSSecretAccessKey == "") {
		l.errs = append(l.errs, "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: only one is set; static AWS credentials need both")
	}
	if (c.AWSRoleARN != "") != (c.AWSWebIdentityToken != "") {
		l.errs = append(l.errs, "AWS_ROLE_ARN / AWS_WEB_IDENTITY_TOKEN_FILE: only one is set; web identity needs both")
	}
	if c.Username == "" && c.Password == "" && c.AWSRegion == "" && KeyspacesRegion(c.Host) == "" {
		l.errs = append(l.errs, "AWS_REGION: missing; required for SigV4 authentication to Keyspaces when CASSANDRA_HOST names no region; expected a region such as us-west-2")
	}
}

// keyspacesRegionLabel matches an AWS region name such as us-west-2 or
// us-gov-west-1.
var keyspacesRegionLabel = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$`)

// KeyspacesRegion is the region an AWS endpoint host names, as the original
// derives it (cassandra.us-west-2.amazonaws.com: us-west-2), or "" when host
// is not an amazonaws.com name with a region label.
func KeyspacesRegion(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !strings.HasSuffix(host, ".amazonaws.com") {
		return ""
	}
	for _, label := range strings.Split(host, ".") {
		if keyspacesRegionLabel.MatchString(label) {
			return label
		}
	}
	return ""
}

// ConnString returns a libpq keyword/value connection string for database
// db (the configured one when db is ""). Values are quoted, so passwords with
// spaces or quotes work.
func (p Postgres) ConnString(db string) string {
	if db == "" {
		db = p.DB
	}
	kv := [][2]string{{"host", p.Host}, {"port", strconv.Itoa(p.Port)}, {"dbname", db}, {"user", p.User}}
	if p.Password != "" {
		kv = append(kv, [2]string{"password", p.Password})
	}
	if p.SSLMode != "" {
		kv = append(kv, [2]string{"sslmode", p.SSLMode})
	}
	if p.ConnectTimeout > 0 {
		kv = append(kv, [2]string{"connect_timeout", strconv.Itoa(max(1, int(p.ConnectTimeout.Round(time.Second)/time.Second)))})
	}
	var b strings.Builder
	for i, pair := range kv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pair[0])
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pair[1]))
		b.WriteByte('\'')
	}
	return b.String()
}
