// Package config reads and validates the coordinator's environment once, at
// start-up. Every problem is collected and reported together, one line per
// variable, naming the variable, what is wrong and what is expected.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Storage names, as SUBMISSION_STORAGE spells them.
const (
	StoragePostgres  = "POSTGRES"
	StorageCassandra = "CASSANDRA"
)

// Worker modes.
const (
	WorkerKubernetes = "kubernetes"
	WorkerProcess    = "process"
	WorkerNone       = "none"
)

// Postgres holds the connection settings of the coordinator's database.
type Postgres struct {
	Host, DB, User, Password, SSLMode string
	Port                              int
	ROUser, ROPassword                string
	// ConnectTimeout bounds every connection attempt (connect and
	// handshake); 0 means none.
	ConnectTimeout time.Duration
	// StatementTimeout bounds each database step of a batch: the server's
	// statement_timeout of the batch connections, and a client-side deadline
	// that also catches a frozen server. 0 means none.
	StatementTimeout time.Duration
}

// Cassandra holds the settings of the Cassandra / AWS Keyspaces store.
type Cassandra struct {
	Keyspace, Host      string
	Port                int
	Username, Password  string
	SSLCertFile         string
	VerifyHost          bool
	AWSRoleARN          string
	AWSRoleSessionName  string
	AWSWebIdentityToken string // the token file's path
	AWSAccessKeyID      string
	AWSSecretAccessKey  string
	AWSRegion           string
	Consistency         string // of reads, as CQL names it, e.g. LOCAL_ONE
}

// Resources are the worker container's requests and limits, as validated
// Kubernetes quantities (empty when unset).
type Resources struct {
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// Config is the validated configuration.
type Config struct {
	SurveyInterval    time.Duration
	MiniBatchNumber   int
	UptimeDays        int
	RetryCount        int
	SubmissionStorage string
	TestEnv           bool
	WorkerMode        string

	Postgres       Postgres
	Cassandra      Cassandra
	MigrateOnStart bool

	WorkerImage         string
	WorkerTag           string
	WorkerCommand       string
	WorkerTimeout       time.Duration
	MaxUnverifiedPct    float64
	NoChecks            bool
	NoChecksRaw         string // passed to the verifier as given
	AWSS3Bucket         string
	NetworkName         string
	AWSRegion           string
	BlocksDir           string
	SpreadMaxSkew       int
	K8sNodePool         string
	WorkerResources     Resources
	WorkerTTLSeconds    *int32
	ImagePullPolicy     string
	AuthVolumeMountPath string
	WorkerSecretName    string
	EntrypointConfigMap string
	PodNamespace        string

	WebhookURL             string
	AlarmLowerLimit        *time.Duration
	AlarmUpperLimit        *time.Duration
	ValidShareAlertPercent *float64
	ProducerDropAlertPct   float64

	AlertSubscriptionsFile    string
	AlertAllowPrivateNetworks bool
	AlertDrainTimeout         time.Duration
	AlertRetryBase            time.Duration
	AlertRatePerMinute        int
	PublicURL                 string
	AdminAPIToken             string

	IgnoreApplicationStatus    bool
	SpreadsheetName            string
	SpreadsheetCredentialsJSON string

	MetricsAddr string
	APIAddr     string // coordinator serve's listen address (see LoadServe)
	LogLevel    slog.Level

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
	if err := godotenv.Load(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// FromEnv loads the configuration from the process environment.
func FromEnv() (*Config, error) { return Load(os.LookupEnv) }

// Load builds and validates the configuration from lookup. The error, when
// not nil, lists every problem found, one per line.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	l := &loader{lookup: lookup, raw: map[string]string{}, defaults: map[string]string{}}
	c := &Config{raw: l.raw}

	c.SurveyInterval = time.Duration(l.integer("SURVEY_INTERVAL_MINUTES", 1, 24*60)) * time.Minute
	c.MiniBatchNumber = l.integer("MINI_BATCH_NUMBER", 1, 1000)
	c.UptimeDays = l.integer("UPTIME_DAYS_FOR_SCORE", 1, 36500)
	c.RetryCount = l.integer("RETRY_COUNT", 0, 100)
	c.SubmissionStorage = strings.ToUpper(l.oneOf("SUBMISSION_STORAGE", false, StoragePostgres, StorageCassandra))
	c.TestEnv = l.boolean("TEST_ENV")
	if c.TestEnv {
		l.defaults["WORKER_MODE"] = WorkerProcess
	}
	c.WorkerMode = strings.ToLower(l.oneOf("WORKER_MODE", false, WorkerKubernetes, WorkerProcess, WorkerNone))

	c.Postgres = l.postgres()
	c.MigrateOnStart = l.boolean("MIGRATE_ON_START")

	c.WorkerImage = l.str("WORKER_IMAGE")
	c.WorkerTag = l.str("WORKER_TAG")
	c.WorkerCommand = l.str("WORKER_COMMAND")
	c.WorkerTimeout = l.duration("WORKER_TIMEOUT")
	c.MaxUnverifiedPct = l.percent("MAX_UNVERIFIED_PERCENT")
	c.NoChecksRaw = l.str("NO_CHECKS")
	c.NoChecks = l.boolean("NO_CHECKS")
	c.AWSS3Bucket = l.str("AWS_S3_BUCKET")
	c.NetworkName = l.str("NETWORK_NAME")
	c.AWSRegion = l.str("AWS_REGION")
	c.BlocksDir = l.str("BLOCKS_DIR")

	c.SpreadMaxSkew = l.integer("SPREAD_MAX_SKEW", 1, 1000)
	c.K8sNodePool = l.str("K8S_NODE_POOL")
	c.WorkerResources = Resources{
		CPURequest:    l.quantity("WORKER_CPU_REQUEST"),
		MemoryRequest: l.quantity("WORKER_MEMORY_REQUEST"),
		CPULimit:      l.quantity("WORKER_CPU_LIMIT"),
		MemoryLimit:   l.quantity("WORKER_MEMORY_LIMIT"),
	}
	if s := l.str("WORKER_TTL_SECONDS_AFTER_FINISHED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 {
			l.fail("WORKER_TTL_SECONDS_AFTER_FINISHED", s, "a whole number of seconds >= 0")
		} else {
			v := int32(n)
			c.WorkerTTLSeconds = &v
		}
	}
	c.ImagePullPolicy = l.oneOf("IMAGE_PULL_POLICY", false, "Always", "IfNotPresent", "Never")
	c.AuthVolumeMountPath = l.str("AUTH_VOLUME_MOUNT_PATH")
	c.WorkerSecretName = l.str("WORKER_SECRET_NAME")
	c.EntrypointConfigMap = l.str("WORKER_ENTRYPOINT_CONFIGMAP")
	c.PodNamespace = l.str("POD_NAMESPACE")

	switch c.WorkerMode {
	case WorkerKubernetes:
		l.requireFor("WORKER_IMAGE", "WORKER_MODE=kubernetes", "the verifier image name")
		l.requireFor("WORKER_TAG", "WORKER_MODE=kubernetes", "the verifier image tag")
		l.requireFor("AUTH_VOLUME_MOUNT_PATH", "WORKER_MODE=kubernetes", "an absolute path, e.g. /auth")
	case WorkerProcess:
		if c.WorkerCommand == "" {
			l.requireFor("WORKER_IMAGE", "WORKER_MODE=process without WORKER_COMMAND", "the verifier image name")
			l.requireFor("WORKER_TAG", "WORKER_MODE=process without WORKER_COMMAND", "the verifier image tag")
		}
	}

	c.Cassandra = l.cassandra(c.AWSRegion)
	if c.SubmissionStorage == StorageCassandra {
		l.requireCassandra(c.Cassandra)
	}

	c.WebhookURL = l.str("WEBHOOK_URL")
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.fail("WEBHOOK_URL", "(hidden)", "an http(s) URL such as https://hooks.slack.com/services/...")
		}
	}
	c.AlarmLowerLimit = l.seconds("ALARM_ZK_LOWER_LIMIT_SEC")
	c.AlarmUpperLimit = l.seconds("ALARM_ZK_UPPER_LIMIT_SEC")
	c.ProducerDropAlertPct = l.percent("PRODUCER_DROP_ALERT_PERCENT")
	if s := l.str("VALID_SHARE_ALERT_PERCENT"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 100 {
			l.fail("VALID_SHARE_ALERT_PERCENT", s, "a percentage between 0 and 100")
		} else {
			c.ValidShareAlertPercent = &f
		}
	}

	c.AlertSubscriptionsFile = l.str("ALERT_SUBSCRIPTIONS_FILE")
	c.AlertAllowPrivateNetworks = l.boolean("ALERT_ALLOW_PRIVATE_NETWORKS")
	c.AlertDrainTimeout = l.duration("ALERT_DRAIN_TIMEOUT")
	c.AlertRetryBase = l.duration("ALERT_RETRY_BASE")
	c.AlertRatePerMinute = l.integer("ALERT_RATE_PER_MINUTE", 1, 100000)
	c.PublicURL = l.str("PUBLIC_URL")
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.fail("PUBLIC_URL", c.PublicURL, "the http(s) base URL of coordinator serve, such as https://uptime.example.org")
		}
	}
	c.AdminAPIToken = l.str("ADMIN_API_TOKEN")

	c.IgnoreApplicationStatus = l.boolean("IGNORE_APPLICATION_STATUS")
	c.SpreadsheetName = l.str("SPREADSHEET_NAME")
	c.SpreadsheetCredentialsJSON = l.str("SPREADSHEET_CREDENTIALS_JSON")
	// A missing spreadsheet setting never stops scoring: as the original,
	// the update fails with an error logged at every batch (appstatus).

	c.MetricsAddr = l.str("METRICS_ADDR")
	c.APIAddr = l.str("API_ADDR")
	c.LogLevel = l.logLevel()

	if len(l.errs) > 0 {
		return nil, &Error{Problems: l.errs}
	}
	return c, nil
}

func (l *loader) logLevel() slog.Level {
	switch lv := strings.ToLower(l.str("LOG_LEVEL")); lv {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		l.fail("LOG_LEVEL", lv, "one of debug, info, warn, error")
		return slog.LevelInfo
	}
}

// Serve is the configuration of `coordinator serve`: the database (read
// with POSTGRES_RO_USER when it is set), the scoring window and the listen
// address. Only these variables are read, so serve needs no worker or
// Cassandra settings.
type Serve struct {
	Postgres   Postgres
	UptimeDays int
	Addr       string
	LogLevel   slog.Level
	raw        map[string]string
}

// LoadServe reads and validates the variables `coordinator serve` uses.
func LoadServe(lookup func(string) (string, bool)) (*Serve, error) {
	l := &loader{lookup: lookup, raw: map[string]string{}, defaults: map[string]string{}}
	c := &Serve{raw: l.raw}
	c.Postgres = l.postgres()
	c.UptimeDays = l.integer("UPTIME_DAYS_FOR_SCORE", 1, 36500)
	c.Addr = l.required("API_ADDR", "a listen address such as 127.0.0.1:8081 or :8081")
	c.LogLevel = l.logLevel()
	if len(l.errs) > 0 {
		return nil, &Error{Problems: l.errs}
	}
	return c, nil
}

// ReadConnString is the connection string serve reads with: the read-only
// user when POSTGRES_RO_USER is set, else POSTGRES_USER.
func (c *Serve) ReadConnString() string {
	p := c.Postgres
	if p.ROUser != "" {
		p.User, p.Password = p.ROUser, p.ROPassword
	}
	return p.ConnString("")
}

// LogValue logs the configuration with secrets masked.
func (c *Serve) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(c.raw))
	for _, v := range Vars {
		if val, ok := c.raw[v.Name]; ok {
			attrs = append(attrs, slog.String(v.Name, Mask(v.Name, val)))
		}
	}
	return slog.GroupValue(attrs...)
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

// LogValue renders the configuration for logs: every registered variable that
// is set, with secrets masked.
func (c *Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(c.raw))
	for _, v := range Vars {
		val, ok := c.raw[v.Name]
		if !ok {
			continue
		}
		attrs = append(attrs, slog.String(v.Name, Mask(v.Name, val)))
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

// Raw returns a registered variable as it was read (after defaults). It is
// how workers pass values through to the verifier unchanged.
func (c *Config) Raw(name string) string { return c.raw[name] }

type loader struct {
	lookup   func(string) (string, bool)
	raw      map[string]string
	errs     []string
	defaults map[string]string
}

func (l *loader) fail(name, value, expected string) {
	if value == "" {
		l.errs = append(l.errs, fmt.Sprintf("%s: missing; expected %s", name, expected))
		return
	}
	if v, ok := lookupVar(name); ok && v.Secret {
		value = "(hidden)"
	}
	l.errs = append(l.errs, fmt.Sprintf("%s: invalid value %q; expected %s", name, value, expected))
}

// str returns the variable's trimmed value, or its registered default.
func (l *loader) str(name string) string {
	v, ok := lookupVar(name)
	if !ok {
		panic("config: unregistered variable " + name)
	}
	s, set := l.lookup(name)
	s = strings.TrimSpace(s)
	if !set || s == "" {
		s = v.Default
		if d, ok := l.defaults[name]; ok {
			s = d
		}
	}
	if set || s != "" {
		l.raw[name] = s
	}
	return s
}

func (l *loader) required(name, expected string) string {
	s := l.str(name)
	if s == "" {
		l.fail(name, "", expected)
	}
	return s
}

func (l *loader) requireFor(name, why, expected string) {
	if l.raw[name] == "" {
		l.errs = append(l.errs, fmt.Sprintf("%s: missing; required for %s; expected %s", name, why, expected))
	}
}

func (l *loader) integer(name string, lo, hi int) int {
	s := l.str(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		l.fail(name, s, fmt.Sprintf("a whole number from %d to %d", lo, hi))
		return 0
	}
	return n
}

func (l *loader) boolean(name string) bool {
	s := strings.ToLower(l.str(name))
	switch s {
	case "1", "true":
		return true
	case "", "0", "false":
		return false
	}
	l.fail(name, s, `"1" or "true" to enable, "0", "false" or unset to disable`)
	return false
}

func (l *loader) oneOf(name string, optional bool, allowed ...string) string {
	s := l.str(name)
	if s == "" && optional {
		return ""
	}
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a
		}
	}
	l.fail(name, s, "one of "+strings.Join(allowed, ", "))
	return s
}

func (l *loader) duration(name string) time.Duration {
	s := l.str(name)
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		l.fail(name, s, "a positive Go duration such as 90m or 2h")
		return 0
	}
	return d
}

// percent reads a percentage between 0 and 100.
func (l *loader) percent(name string) float64 {
	s := l.str(name)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 100 {
		l.fail(name, s, "a percentage between 0 and 100")
		return 0
	}
	return f
}

func (l *loader) seconds(name string) *time.Duration {
	s := l.str(name)
	if s == "" {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		l.fail(name, s, "a number of seconds >= 0")
		return nil
	}
	d := time.Duration(f * float64(time.Second))
	return &d
}

func (l *loader) quantity(name string) string {
	s := l.str(name)
	if s == "" {
		return ""
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		l.fail(name, s, "a Kubernetes quantity such as 500m, 2 or 1Gi")
		return ""
	}
	return s
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

// LoadPostgres reads and validates only the Postgres variables: what the
// database tasks need.
func LoadPostgres(lookup func(string) (string, bool)) (Postgres, error) {
	l := &loader{lookup: lookup, raw: map[string]string{}, defaults: map[string]string{}}
	p := l.postgres()
	if len(l.errs) > 0 {
		return Postgres{}, &Error{Problems: l.errs}
	}
	return p, nil
}

func (l *loader) postgres() Postgres {
	return Postgres{
		Host:       l.required("POSTGRES_HOST", "a host name or address"),
		Port:       l.integer("POSTGRES_PORT", 1, 65535),
		DB:         l.required("POSTGRES_DB", "a database name"),
		User:       l.required("POSTGRES_USER", "a user name"),
		Password:   l.str("POSTGRES_PASSWORD"),
		SSLMode:    l.oneOf("POSTGRES_SSLMODE", true, "disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
		ROUser:     l.str("POSTGRES_RO_USER"),
		ROPassword: l.str("POSTGRES_RO_PASSWORD"),

		ConnectTimeout:   l.duration("POSTGRES_CONNECT_TIMEOUT"),
		StatementTimeout: l.duration("POSTGRES_STATEMENT_TIMEOUT"),
	}
}

func (l *loader) cassandra(region string) Cassandra {
	c := Cassandra{
		Keyspace:            l.str("AWS_KEYSPACE"),
		Host:                l.str("CASSANDRA_HOST"),
		Username:            l.str("CASSANDRA_USERNAME"),
		Password:            l.str("CASSANDRA_PASSWORD"),
		SSLCertFile:         l.str("SSL_CERTFILE"),
		VerifyHost:          l.boolean("CASSANDRA_SSL_VERIFY_HOST"),
		AWSRoleARN:          l.str("AWS_ROLE_ARN"),
		AWSRoleSessionName:  l.str("AWS_ROLE_SESSION_NAME"),
		AWSWebIdentityToken: l.str("AWS_WEB_IDENTITY_TOKEN_FILE"),
		AWSAccessKeyID:      l.str("AWS_ACCESS_KEY_ID"),
		AWSSecretAccessKey:  l.str("AWS_SECRET_ACCESS_KEY"),
		AWSRegion:           region,
		Consistency:         l.oneOf("CASSANDRA_CONSISTENCY", false, "LOCAL_ONE", "ONE", "LOCAL_QUORUM", "QUORUM", "TWO", "THREE", "ALL"),
	}
	if s := l.str("CASSANDRA_PORT"); s != "" {
		c.Port = l.integer("CASSANDRA_PORT", 1, 65535)
	}
	return c
}

func (l *loader) requireCassandra(c Cassandra) {
	const why = "SUBMISSION_STORAGE=CASSANDRA"
	l.requireFor("AWS_KEYSPACE", why, "the keyspace holding the submissions table")
	l.requireFor("CASSANDRA_HOST", why, "a host name, e.g. cassandra.us-west-2.amazonaws.com")
	l.requireFor("CASSANDRA_PORT", why, "a port, e.g. 9142")
	l.checkCassandraAuth(c)
}

// LoadCassandra reads and validates only the Cassandra / Keyspaces
// variables (and AWS_REGION): what the bundled verifier needs with
// SUBMISSION_STORAGE=CASSANDRA.
func LoadCassandra(lookup func(string) (string, bool)) (Cassandra, error) {
	l := &loader{lookup: lookup, raw: map[string]string{}, defaults: map[string]string{}}
	c := l.cassandra(l.str("AWS_REGION"))
	l.requireCassandra(c)
	if len(l.errs) > 0 {
		return Cassandra{}, &Error{Problems: l.errs}
	}
	return c, nil
}
