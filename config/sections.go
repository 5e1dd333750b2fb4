package config

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/delegation-program/uptime-coordinator/workers"
)

// Each section of the configuration has its own struct and loader; the
// adapters take the section they need (or an option struct built from it),
// never the whole Config.

// Runtime is how batches are cut and scored.
type Runtime struct {
	SurveyInterval    time.Duration // SURVEY_INTERVAL_MINUTES
	MiniBatches       int           // MINI_BATCH_NUMBER
	UptimeDays        int           // UPTIME_DAYS_FOR_SCORE
	RetryCount        int           // RETRY_COUNT
	SubmissionStorage string        // SUBMISSION_STORAGE: StoragePostgres or StorageCassandra
	CatchUpAfter      int           // CATCH_UP_AFTER_BATCHES
	CatchUpChunk      int           // CATCH_UP_CHUNK_BATCHES
}

func (l *loader) runtime() Runtime {
	return Runtime{
		SurveyInterval:    time.Duration(l.integer("SURVEY_INTERVAL_MINUTES", 1, 24*60)) * time.Minute,
		MiniBatches:       l.integer("MINI_BATCH_NUMBER", 1, 1000),
		UptimeDays:        l.integer("UPTIME_DAYS_FOR_SCORE", 1, 36500),
		RetryCount:        l.integer("RETRY_COUNT", 0, 100),
		SubmissionStorage: l.storage(),
		CatchUpAfter:      l.integer("CATCH_UP_AFTER_BATCHES", 0, 1000000),
		CatchUpChunk:      l.integer("CATCH_UP_CHUNK_BATCHES", 2, 10000),
	}
}

func (l *loader) storage() string {
	return strings.ToUpper(l.oneOf("SUBMISSION_STORAGE", false, StoragePostgres, StorageCassandra))
}

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
	// MigrateOnStart: run applies pending migrations at start.
	MigrateOnStart bool
}

func (l *loader) postgres() Postgres {
	return Postgres{
		Host:           l.required("POSTGRES_HOST", "a host name or address"),
		Port:           l.integer("POSTGRES_PORT", 1, 65535),
		DB:             l.required("POSTGRES_DB", "a database name"),
		User:           l.required("POSTGRES_USER", "a user name"),
		Password:       l.str("POSTGRES_PASSWORD"),
		SSLMode:        l.oneOf("POSTGRES_SSLMODE", true, "disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
		ROUser:         l.str("POSTGRES_RO_USER"),
		ROPassword:     l.str("POSTGRES_RO_PASSWORD"),
		MigrateOnStart: l.boolean("MIGRATE_ON_START"),

		ConnectTimeout:   l.duration("POSTGRES_CONNECT_TIMEOUT"),
		StatementTimeout: l.duration("POSTGRES_STATEMENT_TIMEOUT"),
	}
}

// LoadPostgres reads and validates only the Postgres variables: what the
// database tasks need.
func LoadPostgres(lookup func(string) (string, bool)) (Postgres, error) {
	l := newLoader(lookup)
	p := l.postgres()
	if err := l.err(); err != nil {
		return Postgres{}, err
	}
	return p, nil
}

// Cassandra holds the settings of the Cassandra / AWS Keyspaces store.
type Cassandra struct {
	Keyspace, Host     string
	Port               int
	Username, Password string
	SSLCertFile        string
	VerifyHost         bool
	// AWSRoleARN and AWSWebIdentityToken are only checked (both or
	// neither): the AWS SDK's default chain reads them, and
	// AWS_ROLE_SESSION_NAME, from the environment itself.
	AWSRoleARN          string
	AWSWebIdentityToken string // the token file's path
	AWSAccessKeyID      string
	AWSSecretAccessKey  string
	AWSRegion           string
	Consistency         string // of reads, as CQL names it, e.g. LOCAL_ONE
}

func (l *loader) cassandra() Cassandra {
	c := Cassandra{
		Keyspace:            l.str("AWS_KEYSPACE"),
		Host:                l.str("CASSANDRA_HOST"),
		Username:            l.str("CASSANDRA_USERNAME"),
		Password:            l.str("CASSANDRA_PASSWORD"),
		SSLCertFile:         l.str("SSL_CERTFILE"),
		VerifyHost:          l.boolean("CASSANDRA_SSL_VERIFY_HOST"),
		AWSRoleARN:          l.str("AWS_ROLE_ARN"),
		AWSWebIdentityToken: l.str("AWS_WEB_IDENTITY_TOKEN_FILE"),
		AWSAccessKeyID:      l.str("AWS_ACCESS_KEY_ID"),
		AWSSecretAccessKey:  l.str("AWS_SECRET_ACCESS_KEY"),
		AWSRegion:           l.str("AWS_REGION"),
		Consistency:         l.oneOf("CASSANDRA_CONSISTENCY", false, "LOCAL_ONE", "ONE", "LOCAL_QUORUM", "QUORUM", "TWO", "THREE", "ALL"),
	}
	// Read only to show it in the start-up configuration: the AWS SDK's
	// default chain takes the role session name from the environment.
	l.str("AWS_ROLE_SESSION_NAME")
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
// variables (and AWS_REGION), as SUBMISSION_STORAGE=CASSANDRA needs them.
func LoadCassandra(lookup func(string) (string, bool)) (Cassandra, error) {
	l := newLoader(lookup)
	c := l.cassandra()
	l.requireCassandra(c)
	if err := l.err(); err != nil {
		return Cassandra{}, err
	}
	return c, nil
}

// Workers is how verifiers are launched, and what they are given.
type Workers struct {
	Mode                 string // WORKER_MODE: workers.ModeKubernetes, workers.ModeProcess or workers.ModeNone
	Image, Tag           string
	Command              string        // WORKER_COMMAND (process mode)
	Timeout              time.Duration // WORKER_TIMEOUT
	MaxUnverifiedPercent float64       // MAX_UNVERIFIED_PERCENT
	MaxBlockBytes        int64         // BLOCK_FILE_MAX_BYTES, for process-mode bundled verifiers
	NoChecks             bool
	NoChecksRaw          string // NO_CHECKS as given, passed to the verifier
	AWSS3Bucket          string
	NetworkName          string
	AWSRegion            string
	// PassEnv is what process-mode workers get of the coordinator's own
	// environment ("NAME=value"): PATH, HOME, TZ and the names of
	// WORKER_ENV_ALLOW that are set. Nothing else reaches them besides the
	// verifier contract's variables.
	PassEnv []string
}

// alwaysPassed reach process-mode workers whatever WORKER_ENV_ALLOW says.
var alwaysPassed = []string{"PATH", "HOME", "TZ"}

func (l *loader) passEnv() []string {
	names := slices.Clone(alwaysPassed)
	for _, n := range strings.Split(l.str("WORKER_ENV_ALLOW"), ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if v, ok := lookupVar(n); ok && v.Secret {
			l.errs = append(l.errs, fmt.Sprintf("WORKER_ENV_ALLOW: %s is a secret of the coordinator and is never passed to workers (the verifier contract passes the secrets a verifier needs)", n))
			continue
		}
		names = append(names, n)
	}
	var out []string
	for _, n := range slices.Compact(names) {
		if val, ok := l.lookup(n); ok {
			out = append(out, n+"="+val)
		}
	}
	return out
}

func (l *loader) workers() Workers {
	testEnv := l.boolean("TEST_ENV")
	if testEnv {
		l.defaults["WORKER_MODE"] = workers.ModeProcess
	}
	w := Workers{
		Mode:                 strings.ToLower(l.oneOf("WORKER_MODE", false, workers.ModeKubernetes, workers.ModeProcess, workers.ModeNone)),
		Image:                l.str("WORKER_IMAGE"),
		Tag:                  l.str("WORKER_TAG"),
		Command:              l.str("WORKER_COMMAND"),
		Timeout:              l.duration("WORKER_TIMEOUT"),
		MaxUnverifiedPercent: l.percent("MAX_UNVERIFIED_PERCENT"),
		MaxBlockBytes:        int64(l.integer("BLOCK_FILE_MAX_BYTES", 1024, 1<<30)),
		NoChecksRaw:          l.str("NO_CHECKS"),
		NoChecks:             l.boolean("NO_CHECKS"),
		AWSS3Bucket:          l.str("AWS_S3_BUCKET"),
		NetworkName:          l.str("NETWORK_NAME"),
		AWSRegion:            l.str("AWS_REGION"),
		PassEnv:              l.passEnv(),
	}
	switch w.Mode {
	case workers.ModeKubernetes:
		l.requireFor("WORKER_IMAGE", "WORKER_MODE=kubernetes", "the verifier image name")
		l.requireFor("WORKER_TAG", "WORKER_MODE=kubernetes", "the verifier image tag")
	case workers.ModeProcess:
		if w.Command == "" {
			l.requireFor("WORKER_IMAGE", "WORKER_MODE=process without WORKER_COMMAND", "the verifier image name")
			l.requireFor("WORKER_TAG", "WORKER_MODE=process without WORKER_COMMAND", "the verifier image tag")
		}
	}
	return w
}

// Resources are the worker container's requests and limits, as validated
// Kubernetes quantities (empty when unset).
type Resources struct {
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// Kubernetes is the worker Jobs' settings (WORKER_MODE=kubernetes) and how
// the coordinator reaches the API server.
type Kubernetes struct {
	SpreadMaxSkew           int
	NodePool                string // K8S_NODE_POOL
	Resources               Resources
	TTLSecondsAfterFinished *int32 // WORKER_TTL_SECONDS_AFTER_FINISHED
	ImagePullPolicy         string
	AuthVolumeMountPath     string
	SecretName              string // WORKER_SECRET_NAME
	// SecretsInline is compatibility mode (WORKER_SECRET_NAME set to the
	// empty string): secrets go into the Jobs as plain values.
	SecretsInline bool
	// StuckTimeout (WORKER_STUCK_TIMEOUT): how long a worker pod may stay
	// stuck before the attempt fails.
	StuckTimeout             time.Duration
	PodSecurityContext       *corev1.PodSecurityContext // WORKER_POD_SECURITY_CONTEXT
	ContainerSecurityContext *corev1.SecurityContext    // WORKER_CONTAINER_SECURITY_CONTEXT
	EntrypointConfigMap      string                     // WORKER_ENTRYPOINT_CONFIGMAP
	ServiceAccount           string                     // WORKER_SERVICE_ACCOUNT
	// Namespace of the worker Jobs (POD_NAMESPACE); empty: the service
	// account's namespace file.
	Namespace string
	// Kubeconfig (KUBECONFIG) is used outside a cluster; empty:
	// ~/.kube/config.
	Kubeconfig string
}

func (l *loader) kubernetes(required bool) Kubernetes {
	k := Kubernetes{
		SpreadMaxSkew: l.integer("SPREAD_MAX_SKEW", 1, 1000),
		NodePool:      l.str("K8S_NODE_POOL"),
		Resources: Resources{
			CPURequest:    l.quantity("WORKER_CPU_REQUEST"),
			MemoryRequest: l.quantity("WORKER_MEMORY_REQUEST"),
			CPULimit:      l.quantity("WORKER_CPU_LIMIT"),
			MemoryLimit:   l.quantity("WORKER_MEMORY_LIMIT"),
		},
		TTLSecondsAfterFinished: l.int32Seconds("WORKER_TTL_SECONDS_AFTER_FINISHED"),
		ImagePullPolicy:         l.oneOf("IMAGE_PULL_POLICY", false, "Always", "IfNotPresent", "Never"),
		AuthVolumeMountPath:     l.str("AUTH_VOLUME_MOUNT_PATH"),
		SecretName:              l.str("WORKER_SECRET_NAME"),
		EntrypointConfigMap:     l.str("WORKER_ENTRYPOINT_CONFIGMAP"),
		ServiceAccount:          l.str("WORKER_SERVICE_ACCOUNT"),
		Namespace:               l.str("POD_NAMESPACE"),
		Kubeconfig:              l.str("KUBECONFIG"),
	}
	if v, set := l.lookup("WORKER_SECRET_NAME"); set && strings.TrimSpace(v) == "" {
		k.SecretName, k.SecretsInline = "", true
		l.raw["WORKER_SECRET_NAME"] = ""
	}
	k.StuckTimeout = l.duration("WORKER_STUCK_TIMEOUT")
	k.PodSecurityContext = new(corev1.PodSecurityContext)
	l.jsonObject("WORKER_POD_SECURITY_CONTEXT", k.PodSecurityContext, "a Kubernetes PodSecurityContext as JSON")
	k.ContainerSecurityContext = new(corev1.SecurityContext)
	l.jsonObject("WORKER_CONTAINER_SECURITY_CONTEXT", k.ContainerSecurityContext, "a Kubernetes SecurityContext as JSON")
	if required {
		l.requireFor("AUTH_VOLUME_MOUNT_PATH", "WORKER_MODE=kubernetes", "an absolute path, e.g. /auth")
	}
	return k
}

// Alerts is the operator alerts (WEBHOOK_URL) and the per-producer alert
// delivery.
type Alerts struct {
	WebhookURL          string
	ZKLowerLimit        *time.Duration // ALARM_ZK_LOWER_LIMIT_SEC; nil when unset
	ZKUpperLimit        *time.Duration // ALARM_ZK_UPPER_LIMIT_SEC; nil when unset
	ValidSharePercent   *float64       // VALID_SHARE_ALERT_PERCENT; nil when unset
	ProducerDropPercent float64        // PRODUCER_DROP_ALERT_PERCENT; 0 disables

	SubscriptionsFile    string // ALERT_SUBSCRIPTIONS_FILE
	AllowPrivateNetworks bool   // ALERT_ALLOW_PRIVATE_NETWORKS
	DrainTimeout         time.Duration
	RetryBase            time.Duration
	RatePerMinute        int
	PublicURL            string
	AdminAPIToken        string
}

func (l *loader) alerts() Alerts {
	return Alerts{
		WebhookURL:          l.httpURL("WEBHOOK_URL", "an http(s) URL such as https://hooks.slack.com/services/..."),
		ZKLowerLimit:        l.seconds("ALARM_ZK_LOWER_LIMIT_SEC"),
		ZKUpperLimit:        l.seconds("ALARM_ZK_UPPER_LIMIT_SEC"),
		ProducerDropPercent: l.percent("PRODUCER_DROP_ALERT_PERCENT"),
		ValidSharePercent:   l.optionalPercent("VALID_SHARE_ALERT_PERCENT"),

		SubscriptionsFile:    l.str("ALERT_SUBSCRIPTIONS_FILE"),
		AllowPrivateNetworks: l.boolean("ALERT_ALLOW_PRIVATE_NETWORKS"),
		DrainTimeout:         l.duration("ALERT_DRAIN_TIMEOUT"),
		RetryBase:            l.duration("ALERT_RETRY_BASE"),
		RatePerMinute:        l.integer("ALERT_RATE_PER_MINUTE", 1, 100000),
		PublicURL:            l.httpURL("PUBLIC_URL", "the http(s) base URL of coordinator serve, such as https://uptime.example.org"),
		AdminAPIToken:        l.str("ADMIN_API_TOKEN"),
	}
}

// AppStatus is the application status update from the registration
// spreadsheet.
type AppStatus struct {
	Ignore          bool   // IGNORE_APPLICATION_STATUS
	SpreadsheetName string // SPREADSHEET_NAME
	CredentialsJSON string // SPREADSHEET_CREDENTIALS_JSON: the key file's path
}

func (l *loader) appStatus() AppStatus {
	// A missing spreadsheet setting never stops scoring: as the original,
	// the update fails with an error logged at every batch (appstatus).
	return AppStatus{
		Ignore:          l.boolean("IGNORE_APPLICATION_STATUS"),
		SpreadsheetName: l.str("SPREADSHEET_NAME"),
		CredentialsJSON: l.str("SPREADSHEET_CREDENTIALS_JSON"),
	}
}

// HTTP is run's listener for operators (serve's is Serve.Addr).
type HTTP struct {
	MetricsAddr string // METRICS_ADDR; empty: no listener
}

func (l *loader) http() HTTP {
	return HTTP{MetricsAddr: l.strOrEmpty("METRICS_ADDR")}
}

// Log formats, as LOG_FORMAT spells them.
const (
	LogJSON = "json"
	LogText = "text"
)

// Log is how the coordinator logs.
type Log struct {
	Level slog.Level // LOG_LEVEL
	// Format is LOG_FORMAT: LogJSON, LogText, or "" for text on a terminal
	// and JSON otherwise.
	Format string
}

func (l *loader) log() Log {
	lg := Log{Format: strings.ToLower(l.oneOf("LOG_FORMAT", true, LogJSON, LogText))}
	switch lv := strings.ToLower(l.str("LOG_LEVEL")); lv {
	case "debug":
		lg.Level = slog.LevelDebug
	case "info":
		lg.Level = slog.LevelInfo
	case "warn", "warning":
		lg.Level = slog.LevelWarn
	case "error":
		lg.Level = slog.LevelError
	default:
		l.fail("LOG_LEVEL", lv, "one of debug, info, warn, error")
	}
	return lg
}

// LoadLog reads only the logging variables.
func LoadLog(lookup func(string) (string, bool)) (Log, error) {
	l := newLoader(lookup)
	lg := l.log()
	if err := l.err(); err != nil {
		return Log{}, err
	}
	return lg, nil
}

// Verifier is what the bundled verifier (coordinator verify) needs: where
// the submissions are and where the blocks are.
type Verifier struct {
	BlocksDir         string // BLOCKS_DIR
	MaxBlockBytes     int64  // BLOCK_FILE_MAX_BYTES
	SubmissionStorage string
	Postgres          Postgres  // with StoragePostgres
	Cassandra         Cassandra // with StorageCassandra
	Log               Log
}

// LoadVerifier reads and validates the bundled verifier's variables.
func LoadVerifier(lookup func(string) (string, bool)) (Verifier, error) {
	l := newLoader(lookup)
	v := Verifier{BlocksDir: l.str("BLOCKS_DIR"), MaxBlockBytes: int64(l.integer("BLOCK_FILE_MAX_BYTES", 1024, 1<<30)),
		SubmissionStorage: l.storage(), Log: l.log()}
	if v.BlocksDir == "" {
		l.errs = append(l.errs, "BLOCKS_DIR: missing; required by the bundled verifier; expected the directory of <block_hash>.json precomputed blocks")
	}
	switch v.SubmissionStorage {
	case StorageCassandra:
		v.Cassandra = l.cassandra()
		l.requireCassandra(v.Cassandra)
	default:
		v.Postgres = l.postgres()
	}
	if err := l.err(); err != nil {
		return Verifier{}, err
	}
	return v, nil
}

// Tasks are the mage targets' parameters (read by internal/magetasks, which
// magefiles/ runs).
type Tasks struct {
	BatchEndEpoch string // BATCH_END_EPOCH, as init-database --batch-end-epoch
	MinsAgo       *int   // MINS_AGO; nil when unset
	OverrideEmpty bool   // OVERRIDE_EMPTY
	Producers     int    // PRODUCERS
	Hours         int    // HOURS
	Seed          uint64 // SEED; 0 when unset
	Keep          bool   // KEEP
}

// LoadTasks reads the mage targets' parameters.
func LoadTasks(lookup func(string) (string, bool)) (Tasks, error) {
	l := newLoader(lookup)
	t := Tasks{
		BatchEndEpoch: l.str("BATCH_END_EPOCH"),
		OverrideEmpty: l.boolean("OVERRIDE_EMPTY"),
		Producers:     l.integer("PRODUCERS", 1, 1_000_000),
		Hours:         l.integer("HOURS", 1, 24*366),
		Keep:          l.boolean("KEEP"),
	}
	if s := l.str("MINS_AGO"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			l.fail("MINS_AGO", s, "a whole number of minutes")
		}
		t.MinsAgo = &n
	}
	if s := l.str("SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			l.fail("SEED", s, "a whole number >= 1")
		}
		t.Seed = n
	}
	if err := l.err(); err != nil {
		return Tasks{}, err
	}
	return t, nil
}

// Serve is the configuration of `coordinator serve`: the database (read
// with POSTGRES_RO_USER when it is set), the scoring window and the listen
// address. Only these variables are read, so serve needs no worker or
// Cassandra settings.
type Serve struct {
	Postgres   Postgres
	UptimeDays int
	Addr       string
	Log        Log
	// AdminAPIToken (ADMIN_API_TOKEN) and AlertAllowPrivateNetworks
	// (ALERT_ALLOW_PRIVATE_NETWORKS): the subscription API's admin token
	// and outbound policy.
	AdminAPIToken             string
	AlertAllowPrivateNetworks bool
	raw                       map[string]string
}

// LoadServe reads and validates the variables `coordinator serve` uses.
func LoadServe(lookup func(string) (string, bool)) (*Serve, error) {
	l := newLoader(lookup)
	c := &Serve{raw: l.raw}
	c.Postgres = l.postgres()
	c.UptimeDays = l.integer("UPTIME_DAYS_FOR_SCORE", 1, 36500)
	c.Addr = l.required("API_ADDR", "a listen address such as 127.0.0.1:8081 or :8081")
	c.Log = l.log()
	c.AdminAPIToken = l.str("ADMIN_API_TOKEN")
	c.AlertAllowPrivateNetworks = l.boolean("ALERT_ALLOW_PRIVATE_NETWORKS")
	if err := l.err(); err != nil {
		return nil, err
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
func (c *Serve) LogValue() slog.Value { return maskedValue(c.raw) }

// Tests is what the test harnesses (database/pgtest, cassandratest,
// kubetest) read: which servers the tests run against. Development only.
type Tests struct {
	DatabaseURL string // TEST_DATABASE_URL
	Durable     bool   // PGTEST_DURABLE

	Cassandra         bool   // CASSANDRA_TESTS
	CassandraHost     string // CASSANDRA_TEST_HOST
	CassandraPort     int    // CASSANDRA_TEST_PORT
	CassandraUsername string // CASSANDRA_TEST_USERNAME
	CassandraPassword string // CASSANDRA_TEST_PASSWORD
	CassandraCA       string // CASSANDRA_TEST_CA

	KubeToolsDir string // KUBE_TOOLS_DIR
}

// LoadTests reads the test harnesses' variables.
func LoadTests(lookup func(string) (string, bool)) (Tests, error) {
	l := newLoader(lookup)
	t := Tests{
		DatabaseURL:       l.str("TEST_DATABASE_URL"),
		Durable:           l.boolean("PGTEST_DURABLE"),
		Cassandra:         l.boolean("CASSANDRA_TESTS"),
		CassandraHost:     l.str("CASSANDRA_TEST_HOST"),
		CassandraPort:     l.integer("CASSANDRA_TEST_PORT", 1, 65535),
		CassandraUsername: l.str("CASSANDRA_TEST_USERNAME"),
		CassandraPassword: l.str("CASSANDRA_TEST_PASSWORD"),
		CassandraCA:       l.str("CASSANDRA_TEST_CA"),
		KubeToolsDir:      l.str("KUBE_TOOLS_DIR"),
	}
	if err := l.err(); err != nil {
		return Tests{}, err
	}
	return t, nil
}
