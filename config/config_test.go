package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/workers"
)

// base is the smallest valid environment.
func base() map[string]string {
	return map[string]string{
		"POSTGRES_HOST":             "db.internal",
		"POSTGRES_DB":               "coordinator",
		"POSTGRES_USER":             "coordinator",
		"WORKER_MODE":               "none",
		"IGNORE_APPLICATION_STATUS": "1",
	}
}

func lookupFrom(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func load(t *testing.T, env map[string]string) (*Config, error) {
	t.Helper()
	return Load(lookupFrom(env))
}

func TestDefaults(t *testing.T) {
	c, err := load(t, base())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"SURVEY_INTERVAL_MINUTES", c.Runtime.SurveyInterval, 20 * time.Minute},
		{"MINI_BATCH_NUMBER", c.Runtime.MiniBatches, 5},
		{"UPTIME_DAYS_FOR_SCORE", c.Runtime.UptimeDays, 90},
		{"RETRY_COUNT", c.Runtime.RetryCount, 3},
		{"SUBMISSION_STORAGE", c.Runtime.SubmissionStorage, StoragePostgres},
		{"POSTGRES_PORT", c.Postgres.Port, 5432},
		{"POSTGRES_SSLMODE", c.Postgres.SSLMode, ""},
		{"SPREAD_MAX_SKEW", c.Kubernetes.SpreadMaxSkew, 1},
		{"IMAGE_PULL_POLICY", c.Kubernetes.ImagePullPolicy, "IfNotPresent"},
		{"WORKER_TIMEOUT", c.Workers.Timeout, 2 * time.Hour},
		{"WORKER_SECRET_NAME", c.Kubernetes.SecretName, "delegation-verify-coordinator"},
		{"WORKER_ENTRYPOINT_CONFIGMAP", c.Kubernetes.EntrypointConfigMap, "delegation-verify-coordinator-worker"},
		{"CASSANDRA_SSL_VERIFY_HOST", c.Cassandra.VerifyHost, true},
		{"METRICS_ADDR", c.HTTP.MetricsAddr, ":8080"},
		{"LOG_LEVEL", c.Log.Level, slog.LevelInfo},
		{"NO_CHECKS", c.Workers.NoChecks, false},
		{"WORKER_TTL_SECONDS_AFTER_FINISHED", c.Kubernetes.TTLSecondsAfterFinished == nil, true},
		{"ALARM_ZK_LOWER_LIMIT_SEC", c.Alerts.ZKLowerLimit == nil, true},
		{"VALID_SHARE_ALERT_PERCENT", c.Alerts.ValidSharePercent == nil, true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: default %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Every registered default is what the loader applies.
	for _, v := range Vars {
		if v.Group == groupTasks || v.Group == groupServe || v.Group == groupTests {
			continue // not coordinator run's; see TestTasks, TestServe and TestLoadTests
		}
		if v.Default != "" && c.raw[v.Name] != v.Default && base()[v.Name] == "" {
			t.Errorf("%s: raw default %q, registered %q", v.Name, c.raw[v.Name], v.Default)
		}
	}
}

func TestWorkerModeDefault(t *testing.T) {
	env := base()
	delete(env, "WORKER_MODE")
	env["WORKER_IMAGE"], env["WORKER_TAG"], env["AUTH_VOLUME_MOUNT_PATH"] = "verifier", "1.0", "/auth"
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers.Mode != workers.ModeKubernetes {
		t.Errorf("WORKER_MODE default %q, want kubernetes", c.Workers.Mode)
	}
	env["TEST_ENV"] = "TRUE"
	if c, err = load(t, env); err != nil {
		t.Fatal(err)
	}
	if c.Workers.Mode != workers.ModeProcess {
		t.Errorf("TEST_ENV=TRUE gives mode %q, want process", c.Workers.Mode)
	}
	env["WORKER_MODE"] = "none"
	if c, err = load(t, env); err != nil {
		t.Fatal(err)
	}
	if c.Workers.Mode != workers.ModeNone {
		t.Errorf("explicit WORKER_MODE=none with TEST_ENV gives %q", c.Workers.Mode)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]string
		del  []string
		want string // a fragment of the problem line
	}{
		{"interval not a number", map[string]string{"SURVEY_INTERVAL_MINUTES": "twenty"}, nil, `SURVEY_INTERVAL_MINUTES: invalid value "twenty"; expected a whole number from 1 to 1440`},
		{"interval zero", map[string]string{"SURVEY_INTERVAL_MINUTES": "0"}, nil, "SURVEY_INTERVAL_MINUTES: invalid value \"0\""},
		{"mini batches", map[string]string{"MINI_BATCH_NUMBER": "-1"}, nil, "MINI_BATCH_NUMBER: invalid value \"-1\"; expected a whole number from 1"},
		{"uptime days", map[string]string{"UPTIME_DAYS_FOR_SCORE": "1.5"}, nil, "UPTIME_DAYS_FOR_SCORE: invalid value"},
		{"retry count", map[string]string{"RETRY_COUNT": "x"}, nil, "RETRY_COUNT: invalid value \"x\"; expected a whole number from 0 to 100"},
		{"storage", map[string]string{"SUBMISSION_STORAGE": "mysql"}, nil, `SUBMISSION_STORAGE: invalid value "mysql"; expected one of POSTGRES, CASSANDRA`},
		{"worker mode", map[string]string{"WORKER_MODE": "docker"}, nil, "WORKER_MODE: invalid value \"docker\"; expected one of kubernetes, process, none"},
		{"test env", map[string]string{"TEST_ENV": "yes"}, nil, `TEST_ENV: invalid value "yes"; expected "1" or "true" to enable`},
		{"postgres host", nil, []string{"POSTGRES_HOST"}, "POSTGRES_HOST: missing; expected a host name or address"},
		{"postgres db", nil, []string{"POSTGRES_DB"}, "POSTGRES_DB: missing"},
		{"postgres user", nil, []string{"POSTGRES_USER"}, "POSTGRES_USER: missing"},
		{"postgres port", map[string]string{"POSTGRES_PORT": "70000"}, nil, "POSTGRES_PORT: invalid value \"70000\"; expected a whole number from 1 to 65535"},
		{"sslmode", map[string]string{"POSTGRES_SSLMODE": "strict"}, nil, "POSTGRES_SSLMODE: invalid value \"strict\"; expected one of disable"},
		{"worker timeout", map[string]string{"WORKER_TIMEOUT": "soon"}, nil, "WORKER_TIMEOUT: invalid value \"soon\"; expected a positive Go duration"},
		{"no checks", map[string]string{"NO_CHECKS": "maybe"}, nil, "NO_CHECKS: invalid value \"maybe\""},
		{"spread", map[string]string{"SPREAD_MAX_SKEW": "0"}, nil, "SPREAD_MAX_SKEW: invalid value \"0\""},
		{"cpu request", map[string]string{"WORKER_CPU_REQUEST": "lots"}, nil, "WORKER_CPU_REQUEST: invalid value \"lots\"; expected a Kubernetes quantity"},
		{"memory request", map[string]string{"WORKER_MEMORY_REQUEST": "1GB?"}, nil, "WORKER_MEMORY_REQUEST: invalid value"},
		{"cpu limit", map[string]string{"WORKER_CPU_LIMIT": "-1"}, nil, "WORKER_CPU_LIMIT: invalid value \"-1\""},
		{"memory limit", map[string]string{"WORKER_MEMORY_LIMIT": "x"}, nil, "WORKER_MEMORY_LIMIT: invalid value"},
		{"ttl", map[string]string{"WORKER_TTL_SECONDS_AFTER_FINISHED": "-5"}, nil, "WORKER_TTL_SECONDS_AFTER_FINISHED: invalid value \"-5\""},
		{"pull policy", map[string]string{"IMAGE_PULL_POLICY": "Sometimes"}, nil, "IMAGE_PULL_POLICY: invalid value \"Sometimes\"; expected one of Always, IfNotPresent, Never"},
		{"kubernetes image", map[string]string{"WORKER_MODE": "kubernetes", "AUTH_VOLUME_MOUNT_PATH": "/a", "WORKER_TAG": "1"}, nil, "WORKER_IMAGE: missing; required for WORKER_MODE=kubernetes"},
		{"kubernetes tag", map[string]string{"WORKER_MODE": "kubernetes", "AUTH_VOLUME_MOUNT_PATH": "/a", "WORKER_IMAGE": "v"}, nil, "WORKER_TAG: missing; required for WORKER_MODE=kubernetes"},
		{"kubernetes auth path", map[string]string{"WORKER_MODE": "kubernetes", "WORKER_IMAGE": "v", "WORKER_TAG": "1"}, nil, "AUTH_VOLUME_MOUNT_PATH: missing; required for WORKER_MODE=kubernetes"},
		{"process image", map[string]string{"WORKER_MODE": "process"}, nil, "WORKER_IMAGE: missing; required for WORKER_MODE=process without WORKER_COMMAND"},
		{"cassandra keyspace", map[string]string{"SUBMISSION_STORAGE": "cassandra", "CASSANDRA_HOST": "h", "CASSANDRA_PORT": "9142", "CASSANDRA_USERNAME": "u", "CASSANDRA_PASSWORD": "p"}, nil, "AWS_KEYSPACE: missing; required for SUBMISSION_STORAGE=CASSANDRA"},
		{"cassandra host", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_PORT": "9142", "CASSANDRA_USERNAME": "u", "CASSANDRA_PASSWORD": "p"}, nil, "CASSANDRA_HOST: missing"},
		{"cassandra port", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_HOST": "h", "CASSANDRA_USERNAME": "u", "CASSANDRA_PASSWORD": "p"}, nil, "CASSANDRA_PORT: missing"},
		{"cassandra port value", map[string]string{"CASSANDRA_PORT": "port"}, nil, "CASSANDRA_PORT: invalid value \"port\""},
		{"cassandra no credentials, no region", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_HOST": "h", "CASSANDRA_PORT": "9142"}, nil, "AWS_REGION: missing; required for SigV4 authentication to Keyspaces when CASSANDRA_HOST names no region"},
		{"cassandra consistency", map[string]string{"CASSANDRA_CONSISTENCY": "SERIAL"}, nil, `CASSANDRA_CONSISTENCY: invalid value "SERIAL"; expected one of LOCAL_ONE, ONE, LOCAL_QUORUM`},
		{"cassandra half password", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_HOST": "h", "CASSANDRA_PORT": "9142", "CASSANDRA_USERNAME": "u"}, nil, "only one is set; password authentication needs both"},
		{"cassandra web identity", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_HOST": "h", "CASSANDRA_PORT": "9142", "AWS_ROLE_ARN": "arn", "AWS_REGION": "us-west-2"}, nil, "AWS_ROLE_ARN / AWS_WEB_IDENTITY_TOKEN_FILE: only one is set"},
		{"cassandra static key", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_HOST": "h", "CASSANDRA_PORT": "9142", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_REGION": "us-west-2"}, nil, "static AWS credentials need both"},
		{"cassandra region", map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "k", "CASSANDRA_HOST": "h", "CASSANDRA_PORT": "9142", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}, nil, "AWS_REGION: missing; required for SigV4"},
		{"verify host", map[string]string{"CASSANDRA_SSL_VERIFY_HOST": "sure"}, nil, "CASSANDRA_SSL_VERIFY_HOST: invalid value"},
		{"webhook", map[string]string{"WEBHOOK_URL": "hooks.slack.com/x"}, nil, `WEBHOOK_URL: invalid value "(hidden)"; expected an http(s) URL`},
		{"alarm lower", map[string]string{"ALARM_ZK_LOWER_LIMIT_SEC": "fast"}, nil, "ALARM_ZK_LOWER_LIMIT_SEC: invalid value \"fast\"; expected a number of seconds"},
		{"alarm upper", map[string]string{"ALARM_ZK_UPPER_LIMIT_SEC": "-3"}, nil, "ALARM_ZK_UPPER_LIMIT_SEC: invalid value \"-3\""},
		{"valid share", map[string]string{"VALID_SHARE_ALERT_PERCENT": "120"}, nil, "VALID_SHARE_ALERT_PERCENT: invalid value \"120\"; expected a percentage"},
		{"ignore status", map[string]string{"IGNORE_APPLICATION_STATUS": "2"}, nil, "IGNORE_APPLICATION_STATUS: invalid value \"2\""},
		{"stuck timeout", map[string]string{"WORKER_STUCK_TIMEOUT": "0"}, nil, `WORKER_STUCK_TIMEOUT: invalid value "0"; expected a positive Go duration`},
		{"pod security context", map[string]string{"WORKER_POD_SECURITY_CONTEXT": `{"runAsNonRoot": "yes"}`}, nil, "WORKER_POD_SECURITY_CONTEXT: invalid value"},
		{"container security context field", map[string]string{"WORKER_CONTAINER_SECURITY_CONTEXT": `{"readOnlyRootFileSystem": true}`}, nil, `WORKER_CONTAINER_SECURITY_CONTEXT: invalid value "{\"readOnlyRootFileSystem\": true}"; expected a Kubernetes SecurityContext as JSON (unknown field "readOnlyRootFileSystem")`},
		{"log level", map[string]string{"LOG_LEVEL": "chatty"}, nil, "LOG_LEVEL: invalid value \"chatty\"; expected one of debug, info, warn, error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := base()
			for k, v := range tc.set {
				env[k] = v
			}
			for _, k := range tc.del {
				delete(env, k)
			}
			_, err := load(t, env)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("got %v, want a configuration error containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%s\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

// TestKeyspacesDefaults: the production chart's Keyspaces settings with no
// credentials and no AWS_REGION load: SigV4 uses the AWS default chain, the
// region comes from the host, reads are LOCAL_ONE.
func TestKeyspacesDefaults(t *testing.T) {
	env := base()
	for k, v := range map[string]string{"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "bpu_integration_dev",
		"CASSANDRA_HOST": "cassandra.us-west-2.amazonaws.com", "CASSANDRA_PORT": "9142"} {
		env[k] = v
	}
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cassandra.Consistency != "LOCAL_ONE" || c.Cassandra.AWSRegion != "" {
		t.Errorf("consistency %q, region %q; want LOCAL_ONE and none set", c.Cassandra.Consistency, c.Cassandra.AWSRegion)
	}
	for host, want := range map[string]string{
		"cassandra.us-west-2.amazonaws.com":                    "us-west-2",
		"cassandra.eu-central-1.amazonaws.com":                 "eu-central-1",
		"CASSANDRA.AP-SOUTHEAST-2.AMAZONAWS.COM.":              "ap-southeast-2",
		"vpce-0abc-1de.cassandra.us-east-1.vpce.amazonaws.com": "us-east-1",
		"cassandra-fips.us-gov-west-1.amazonaws.com":           "us-gov-west-1",
		"cassandra.example.com":                                "",
		"10.0.0.7":                                             "",
		"us-west-2.example.org":                                "",
	} {
		if got := KeyspacesRegion(host); got != want {
			t.Errorf("KeyspacesRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

// TestWorkerSecretCompatibilityMode: WORKER_SECRET_NAME unset is the
// default Secret; set to the empty string it is compatibility mode.
func TestWorkerSecretCompatibilityMode(t *testing.T) {
	env := base()
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kubernetes.SecretName != "delegation-verify-coordinator" || c.Kubernetes.SecretsInline {
		t.Errorf("unset: secret %q inline %v", c.Kubernetes.SecretName, c.Kubernetes.SecretsInline)
	}
	if c.Kubernetes.StuckTimeout != 5*time.Minute || c.Kubernetes.PodSecurityContext.SeccompProfile == nil ||
		c.Kubernetes.ContainerSecurityContext.AllowPrivilegeEscalation == nil || *c.Kubernetes.ContainerSecurityContext.AllowPrivilegeEscalation {
		t.Errorf("defaults: stuck %v pod %+v container %+v", c.Kubernetes.StuckTimeout, c.Kubernetes.PodSecurityContext, c.Kubernetes.ContainerSecurityContext)
	}
	env["WORKER_SECRET_NAME"] = ""
	if c, err = load(t, env); err != nil {
		t.Fatal(err)
	}
	if c.Kubernetes.SecretName != "" || !c.Kubernetes.SecretsInline {
		t.Errorf("empty: secret %q inline %v", c.Kubernetes.SecretName, c.Kubernetes.SecretsInline)
	}
}

// TestSpreadsheetOptional: a missing spreadsheet setting never stops the
// coordinator (the update logs an error each batch instead, as the original).
func TestSpreadsheetOptional(t *testing.T) {
	env := base()
	env["IGNORE_APPLICATION_STATUS"] = "0"
	delete(env, "SPREADSHEET_NAME")
	delete(env, "SPREADSHEET_CREDENTIALS_JSON")
	c, err := load(t, env)
	if err != nil {
		t.Fatalf("missing SPREADSHEET_NAME and SPREADSHEET_CREDENTIALS_JSON: %v, want no error", err)
	}
	if c.AppStatus.Ignore || c.AppStatus.SpreadsheetName != "" {
		t.Errorf("IgnoreApplicationStatus %v, SpreadsheetName %q", c.AppStatus.Ignore, c.AppStatus.SpreadsheetName)
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	_, err := load(t, map[string]string{"SURVEY_INTERVAL_MINUTES": "x", "RETRY_COUNT": "-1", "WORKER_MODE": "none", "IGNORE_APPLICATION_STATUS": "1"})
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []string{"SURVEY_INTERVAL_MINUTES", "RETRY_COUNT", "POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER"}
	if len(cerr.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(cerr.Problems), len(want), err)
	}
	for i, name := range want {
		if !strings.HasPrefix(cerr.Problems[i], name+":") {
			t.Errorf("problem %d = %q, want it to name %s", i, cerr.Problems[i], name)
		}
	}
}

func TestTruthyValues(t *testing.T) {
	for s, want := range map[string]bool{"1": true, "true": true, "TRUE": true, "True": true, "0": false, "false": false, "": false} {
		env := base()
		env["NO_CHECKS"] = s
		c, err := load(t, env)
		if err != nil {
			t.Fatalf("NO_CHECKS=%q: %v", s, err)
		}
		if c.Workers.NoChecks != want || Truthy(s) != want {
			t.Errorf("NO_CHECKS=%q: got %v, want %v", s, c.Workers.NoChecks, want)
		}
		if c.Workers.NoChecksRaw != s {
			t.Errorf("NO_CHECKS raw %q, want %q (passed to the verifier unchanged)", c.Workers.NoChecksRaw, s)
		}
	}
}

func TestSecretsMasked(t *testing.T) {
	env := base()
	secrets := map[string]string{
		"POSTGRES_PASSWORD":     "pg-s3cret",
		"POSTGRES_RO_PASSWORD":  "ro-s3cret",
		"CASSANDRA_PASSWORD":    "cass-s3cret",
		"AWS_ACCESS_KEY_ID":     "AKIAEXAMPLEKEY",
		"AWS_SECRET_ACCESS_KEY": "aws-s3cret",
		"WEBHOOK_URL":           "https://hooks.slack.com/services/T000/B000/tok3n",
	}
	for k, v := range secrets {
		env[k] = v
	}
	env["CASSANDRA_USERNAME"] = "svc"
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", c)
	out := buf.String()
	for k, v := range secrets {
		if strings.Contains(out, v) {
			t.Errorf("log contains the value of %s: %s", k, out)
		}
		if !strings.Contains(out, `"`+k+`":"***"`) {
			t.Errorf("log does not show %s as masked: %s", k, out)
		}
	}
	if !strings.Contains(out, `"CASSANDRA_USERNAME":"svc"`) || !strings.Contains(out, `"POSTGRES_HOST":"db.internal"`) {
		t.Errorf("log lacks non-secret values: %s", out)
	}
	// A bad secret value is not echoed in the error either.
	env["WEBHOOK_URL"] = "not a url with tok3n"
	_, err = load(t, env)
	if err == nil || strings.Contains(err.Error(), "tok3n") {
		t.Errorf("error leaks the webhook value or is nil: %v", err)
	}
}

func TestDotEnvPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("PGTEST_FROM_FILE=file\nPGTEST_BOTH=file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGTEST_BOTH", "environment")
	// t.Setenv restores only what it set; clean up the variable the file adds.
	t.Cleanup(func() { os.Unsetenv("PGTEST_FROM_FILE") })
	if err := LoadDotEnv(path); err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv("PGTEST_FROM_FILE"); got != "file" {
		t.Errorf("variable only in .env = %q, want file", got)
	}
	if got := os.Getenv("PGTEST_BOTH"); got != "environment" {
		t.Errorf("variable in both = %q, want the environment's value", got)
	}
	if err := LoadDotEnv(filepath.Join(dir, "missing.env")); err != nil {
		t.Errorf("a missing .env must not be an error: %v", err)
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("A='unterminated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LoadDotEnv(bad); err == nil {
		t.Error("a malformed .env must be an error")
	}
}

func TestConnStringQuotes(t *testing.T) {
	p := Postgres{Host: "h", Port: 5432, DB: "d b", User: "u", Password: `it's a \ secret`, SSLMode: "disable"}
	got := p.ConnString("")
	want := `host='h' port='5432' dbname='d b' user='u' password='it\'s a \\ secret' sslmode='disable'`
	if got != want {
		t.Errorf("ConnString = %s\nwant %s", got, want)
	}
}

func TestEveryVariableIsRead(t *testing.T) {
	env := map[string]string{}
	for _, v := range Vars {
		env[v.Name] = "x"
	}
	read := map[string]bool{}
	lookup := func(k string) (string, bool) { read[k] = true; return env[k], true }
	_, _ = Load(lookup)         // coordinator run
	_, _ = LoadVerifier(lookup) // coordinator verify (BLOCKS_DIR)
	_, _ = LoadTasks(lookup)    // the mage targets
	_, _ = LoadServe(lookup)    // coordinator serve (API_ADDR)
	_, _ = LoadTests(lookup)    // the test harnesses
	for _, v := range Vars {
		if !read[v.Name] {
			t.Errorf("%s is registered but never read", v.Name)
		}
	}
}

func TestTasks(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	got, err := LoadTasks(none)
	if err != nil || got.Producers != 300 || got.Hours != 4 || got.Seed != 0 || got.MinsAgo != nil || got.Keep || got.OverrideEmpty {
		t.Errorf("defaults: %+v, %v", got, err)
	}
	env := map[string]string{"PRODUCERS": "50", "HOURS": "2", "SEED": "42", "MINS_AGO": "20", "KEEP": "1", "OVERRIDE_EMPTY": "true", "BATCH_END_EPOCH": "1717545600"}
	got, err = LoadTasks(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || got.Producers != 50 || got.Hours != 2 || got.Seed != 42 || got.MinsAgo == nil || *got.MinsAgo != 20 ||
		!got.Keep || !got.OverrideEmpty || got.BatchEndEpoch != "1717545600" {
		t.Errorf("set: %+v, %v", got, err)
	}
	bad := map[string]string{"PRODUCERS": "0", "SEED": "x", "MINS_AGO": "soon"}
	_, err = LoadTasks(func(k string) (string, bool) { v, ok := bad[k]; return v, ok })
	for _, want := range []string{`PRODUCERS: invalid value "0"`, `SEED: invalid value "x"`, `MINS_AGO: invalid value "soon"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad values: %v, want %q", err, want)
		}
	}
}

func TestLoadServe(t *testing.T) {
	env := map[string]string{"POSTGRES_HOST": "db", "POSTGRES_DB": "d", "POSTGRES_USER": "writer", "POSTGRES_PASSWORD": "w-secret"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := LoadServe(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8081" || c.UptimeDays != 90 {
		t.Errorf("defaults: addr %q, days %d", c.Addr, c.UptimeDays)
	}
	if got := c.ReadConnString(); !strings.Contains(got, "user='writer'") {
		t.Errorf("without POSTGRES_RO_USER: %s", got)
	}
	env["POSTGRES_RO_USER"], env["POSTGRES_RO_PASSWORD"], env["API_ADDR"] = "reader", "r-secret", ":9000"
	if c, err = LoadServe(lookup); err != nil {
		t.Fatal(err)
	}
	if got := c.ReadConnString(); !strings.Contains(got, "user='reader' password='r-secret'") || c.Addr != ":9000" {
		t.Errorf("with POSTGRES_RO_USER: %s, addr %q", got, c.Addr)
	}
	if logged := slog.GroupValue(c.LogValue().Group()...).String(); strings.Contains(logged, "secret") {
		t.Errorf("secrets logged: %s", logged)
	}
	env["WORKER_MODE"], env["UPTIME_DAYS_FOR_SCORE"] = "nonsense", "0" // serve ignores the worker settings
	if _, err := LoadServe(lookup); err == nil || !strings.Contains(err.Error(), "UPTIME_DAYS_FOR_SCORE") || strings.Contains(err.Error(), "WORKER_MODE") {
		t.Errorf("bad UPTIME_DAYS_FOR_SCORE, bad WORKER_MODE: %v", err)
	}
}

func TestLoadTests(t *testing.T) {
	got, err := LoadTests(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Tests{CassandraPort: 9042, CassandraUsername: "cassandra", CassandraPassword: "cassandra"}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	got, err = LoadTests(lookupFrom(map[string]string{
		"TEST_DATABASE_URL": "postgres://u:p@db:5433/postgres", "PGTEST_DURABLE": "1", "CASSANDRA_TESTS": "true",
		"CASSANDRA_TEST_HOST": "cass", "CASSANDRA_TEST_PORT": "9142", "CASSANDRA_TEST_USERNAME": "svc",
		"CASSANDRA_TEST_PASSWORD": "pw", "CASSANDRA_TEST_CA": "/ca.pem", "KUBE_TOOLS_DIR": "/kube",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want = Tests{DatabaseURL: "postgres://u:p@db:5433/postgres", Durable: true, Cassandra: true, CassandraHost: "cass",
		CassandraPort: 9142, CassandraUsername: "svc", CassandraPassword: "pw", CassandraCA: "/ca.pem", KubeToolsDir: "/kube"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	_, err = LoadTests(lookupFrom(map[string]string{"CASSANDRA_TEST_PORT": "cql", "PGTEST_DURABLE": "yes"}))
	if err == nil || !strings.Contains(err.Error(), "CASSANDRA_TEST_PORT") || !strings.Contains(err.Error(), "PGTEST_DURABLE") {
		t.Errorf("bad values: %v, want an error naming both", err)
	}
}
