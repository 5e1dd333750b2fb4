package config

// Var documents one environment variable. The registry below is the single
// source of truth for names, defaults and secrecy: the loader refuses to read
// a variable that is not registered, the masked log output is driven by the
// Secret flag, and docs/configuration.md and .env.example are generated from
// it (go test ./config -update; a test fails when they are stale).
type Var struct {
	Name    string
	Default string // "" when there is none
	Secret  bool   // never logged, never put as a plain value into a Job spec
	Group   string
	Doc     string
}

// Groups, in the order docs/configuration.md lists them.
const (
	groupRuntime   = "Runtime"
	groupPostgres  = "Postgres"
	groupWorkers   = "Workers"
	groupK8s       = "Kubernetes workers"
	groupCassandra = "Cassandra / AWS Keyspaces"
	groupAlerts    = "Alerts"
	groupSheets    = "Application status"
	groupOps       = "Operations"
	groupServe     = "Read API (coordinator serve)"
	groupTasks     = "Mage tasks (development)"
	groupTests     = "Test harnesses (development)"
)

// Vars lists every variable the coordinator reads.
var Vars = []Var{
	{Name: "SURVEY_INTERVAL_MINUTES", Default: "20", Group: groupRuntime, Doc: "Length of one batch (survey interval) in minutes."},
	{Name: "MINI_BATCH_NUMBER", Default: "5", Group: groupRuntime, Doc: "Number of mini-batches (verifier workers) a batch is cut into."},
	{Name: "UPTIME_DAYS_FOR_SCORE", Default: "90", Group: groupRuntime, Doc: "Days of batches the uptime score is computed over."},
	{Name: "RETRY_COUNT", Default: "3", Group: groupRuntime, Doc: "Retries of a failed batch before the coordinator exits; also the backoff limit of a worker Job."},
	{Name: "SUBMISSION_STORAGE", Default: "POSTGRES", Group: groupRuntime, Doc: "Where the collector stores submissions: POSTGRES or CASSANDRA (case-insensitive)."},
	{Name: "CATCH_UP_AFTER_BATCHES", Default: "6", Group: groupRuntime, Doc: "New. When more than this many batch windows are already closed (a coordinator that was down), the loop catches up: up to CATCH_UP_CHUNK_BATCHES batches verified, scored in order and committed in one transaction, with the same rows as batch after batch (several times faster without workers; with workers a range ends once its verification has taken one interval). The default, 6, is two hours of 20-minute windows: the live loop is one or two windows behind and stays batch by batch. 0 keeps one transaction per batch always."},
	{Name: "CATCH_UP_CHUNK_BATCHES", Default: "72", Group: groupRuntime, Doc: "New. Batches per catch-up transaction (memory and the work a crash rolls back)."},

	{Name: "POSTGRES_HOST", Group: groupPostgres, Doc: "Required. PostgreSQL host name or address."},
	{Name: "POSTGRES_PORT", Default: "5432", Group: groupPostgres, Doc: "PostgreSQL port."},
	{Name: "POSTGRES_DB", Group: groupPostgres, Doc: "Required. Database name."},
	{Name: "POSTGRES_USER", Group: groupPostgres, Doc: "Required. User name."},
	{Name: "POSTGRES_PASSWORD", Secret: true, Group: groupPostgres, Doc: "Password (may be empty with trust or peer authentication)."},
	{Name: "POSTGRES_SSLMODE", Group: groupPostgres, Doc: "libpq sslmode: disable, allow, prefer, require, verify-ca or verify-full (default: libpq's prefer)."},
	{Name: "MIGRATE_ON_START", Default: "true", Group: groupPostgres, Doc: "New. run applies pending schema migrations at start (needs DDL rights). False: run refuses to start while migrations are pending; create-database applies them (the Helm chart's init step)."},
	{Name: "POSTGRES_CONNECT_TIMEOUT", Default: "10s", Group: groupPostgres, Doc: "New. Limit of every connection attempt to PostgreSQL, handshake included (Go duration, whole seconds): a server that accepts TCP and never answers fails start-up instead of hanging."},
	{Name: "POSTGRES_STATEMENT_TIMEOUT", Default: "5m", Group: groupPostgres, Doc: "New. Limit of each database step of a batch (reading the latest batch, reading submissions, the commit transaction): the server's statement_timeout and a client-side deadline that also catches a frozen server; the attempt then fails and is retried. The slowest measured batch (10,000 producers) takes under 1 s."},
	{Name: "POSTGRES_RO_USER", Group: groupPostgres, Doc: "Read-only user that create-ro-user creates (for the leaderboard)."},
	{Name: "POSTGRES_RO_PASSWORD", Secret: true, Group: groupPostgres, Doc: "Password of POSTGRES_RO_USER."},

	{Name: "WORKER_MODE", Default: "kubernetes", Group: groupWorkers, Doc: "New. kubernetes, process or none (none: something else verifies, the coordinator only scores). Default process when TEST_ENV is truthy."},
	{Name: "TEST_ENV", Group: groupWorkers, Doc: "Truthy (1/true): run verifiers as local subprocesses (same as WORKER_MODE=process)."},
	{Name: "WORKER_IMAGE", Group: groupWorkers, Doc: "Verifier image (required in kubernetes mode, and in process mode without WORKER_COMMAND)."},
	{Name: "WORKER_TAG", Group: groupWorkers, Doc: "Tag of WORKER_IMAGE."},
	{Name: "WORKER_COMMAND", Group: groupWorkers, Doc: "New. process mode: the verifier command line (split like a shell, never run by one); START and END are appended. Default: docker run of WORKER_IMAGE:WORKER_TAG as the original."},
	{Name: "WORKER_TIMEOUT", Default: "2h", Group: groupWorkers, Doc: "New. How long a batch's verifiers (processes or Jobs) may run before the batch fails (Go duration)."},
	{Name: "MAX_UNVERIFIED_PERCENT", Default: "5", Group: groupWorkers, Doc: "New. When more than this percentage of a window's submissions are still unverified after the verifiers finished, the attempt fails and is retried (nothing is committed). Not checked with WORKER_MODE=none."},
	{Name: "NO_CHECKS", Group: groupWorkers, Doc: "Passed to the verifier; truthy runs it with --no-checks."},
	{Name: "AWS_S3_BUCKET", Group: groupWorkers, Doc: "Passed to the verifier (block storage bucket)."},
	{Name: "NETWORK_NAME", Group: groupWorkers, Doc: "Passed to the verifier (network name, blocks path in the bucket)."},
	{Name: "AWS_REGION", Group: groupWorkers, Doc: "Passed to the verifier as AWS_REGION and AWS_DEFAULT_REGION; region for SigV4 to Keyspaces (default: the region label of CASSANDRA_HOST, e.g. us-west-2 in cassandra.us-west-2.amazonaws.com)."},
	{Name: "WORKER_ENV_ALLOW", Default: "BLOCKS_DIR,BLOCK_FILE_MAX_BYTES,LOG_LEVEL,DOCKER_HOST,TMPDIR", Group: groupWorkers, Doc: "New. process mode: comma-separated names of the coordinator's environment variables passed to the verifier processes, besides PATH, HOME and TZ and the verifier contract's variables; nothing else is passed. Secrets of the registry are refused."},
	{Name: "BLOCK_FILE_MAX_BYTES", Default: "8388608", Group: groupWorkers, Doc: "New. Bundled verifier: largest block file it reads (bytes, 8 MiB by default; real precomputed blocks are far smaller). A larger file is never read: its submissions are invalid with reason \"block too large\"."},
	{Name: "BLOCKS_DIR", Group: groupWorkers, Doc: "New. Bundled verifier (coordinator verify): directory of <block_hash>.json precomputed blocks."},

	{Name: "SPREAD_MAX_SKEW", Default: "1", Group: groupK8s, Doc: "maxSkew of the workers' topology spread constraint."},
	{Name: "K8S_NODE_POOL", Group: groupK8s, Doc: "Karpenter node pool for workers (node selector and toleration)."},
	{Name: "WORKER_CPU_REQUEST", Group: groupK8s, Doc: "Worker CPU request (Kubernetes quantity); omitted when unset."},
	{Name: "WORKER_MEMORY_REQUEST", Group: groupK8s, Doc: "Worker memory request (Kubernetes quantity); omitted when unset."},
	{Name: "WORKER_CPU_LIMIT", Group: groupK8s, Doc: "Worker CPU limit (Kubernetes quantity); omitted when unset."},
	{Name: "WORKER_MEMORY_LIMIT", Group: groupK8s, Doc: "Worker memory limit (Kubernetes quantity); omitted when unset."},
	{Name: "WORKER_TTL_SECONDS_AFTER_FINISHED", Group: groupK8s, Doc: "ttlSecondsAfterFinished of worker Jobs; unset keeps finished Jobs."},
	{Name: "IMAGE_PULL_POLICY", Default: "IfNotPresent", Group: groupK8s, Doc: "Always, IfNotPresent or Never."},
	{Name: "AUTH_VOLUME_MOUNT_PATH", Group: groupK8s, Doc: "Mount path of the workers' auth emptyDir (required in kubernetes mode)."},
	{Name: "WORKER_SECRET_NAME", Default: "delegation-verify-coordinator", Group: groupK8s, Doc: "New. Secret the worker pods read passwords and keys from (secretKeyRef); its keys are the variable names. Checked at start: it must exist and hold every key the Jobs reference. Set to the empty string: compatibility mode, secrets go into the Jobs as plain env values as the original did (a warning at start)."},
	{Name: "WORKER_STUCK_TIMEOUT", Default: "5m", Group: groupK8s, Doc: "New. A worker pod held in CreateContainerConfigError, ImagePullBackOff, ErrImagePull, InvalidImageName or Unschedulable this long fails the batch attempt with the pod's reason; its Job is deleted (Go duration)."},
	{Name: "WORKER_POD_SECURITY_CONTEXT", Default: `{"seccompProfile":{"type":"RuntimeDefault"}}`, Group: groupK8s, Doc: "New. Pod securityContext of the worker Jobs (JSON, a Kubernetes PodSecurityContext)."},
	{Name: "WORKER_CONTAINER_SECURITY_CONTEXT", Default: `{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"seccompProfile":{"type":"RuntimeDefault"}}`, Group: groupK8s, Doc: "New. securityContext of the worker Jobs' containers (JSON, a Kubernetes SecurityContext). The default suits the verifier image, which runs as root; add runAsNonRoot and runAsUser for a non-root image."},
	{Name: "WORKER_SERVICE_ACCOUNT", Default: "delegation-verify", Group: groupK8s, Doc: "New. ServiceAccount of the worker Jobs (the original's fixed name by default). Checked at start, with WORKER_ENTRYPOINT_CONFIGMAP: a missing one would leave the Jobs without pods."},
	{Name: "WORKER_ENTRYPOINT_CONFIGMAP", Default: "delegation-verify-coordinator-worker", Group: groupK8s, Doc: "New. ConfigMap holding entrypoint-worker.sh, mounted at /bin/entrypoint."},
	{Name: "KUBECONFIG", Group: groupK8s, Doc: "New. Outside a cluster: the kubeconfig file(s) to reach the API server (default ~/.kube/config); inside one the Pod's service account is used."},
	{Name: "POD_NAMESPACE", Group: groupK8s, Doc: "New. Namespace for worker Jobs; default: the service account's namespace file."},

	{Name: "AWS_KEYSPACE", Group: groupCassandra, Doc: "Keyspace holding the submissions table (required with CASSANDRA)."},
	{Name: "CASSANDRA_HOST", Group: groupCassandra, Doc: "Cassandra / Keyspaces host (required with CASSANDRA)."},
	{Name: "CASSANDRA_PORT", Group: groupCassandra, Doc: "Cassandra / Keyspaces port (required with CASSANDRA, 9142 for Keyspaces)."},
	{Name: "CASSANDRA_USERNAME", Group: groupCassandra, Doc: "Service user name (password authentication)."},
	{Name: "CASSANDRA_PASSWORD", Secret: true, Group: groupCassandra, Doc: "Service user password."},
	{Name: "SSL_CERTFILE", Group: groupCassandra, Doc: "CA bundle for TLS to Cassandra / Keyspaces; TLS is on when set, and always for port 9142 or a *.amazonaws.com host (then, unset, the system roots plus the built-in Amazon roots)."},
	{Name: "CASSANDRA_SSL_VERIFY_HOST", Default: "true", Group: groupCassandra, Doc: "New. Verify the server's host name against its certificate."},
	{Name: "CASSANDRA_CONSISTENCY", Default: "LOCAL_ONE", Group: groupCassandra, Doc: "New. Consistency of the submission reads: LOCAL_ONE (the original's), ONE, LOCAL_QUORUM, QUORUM, TWO, THREE or ALL. Writes of the bundled verifier always use LOCAL_QUORUM (what Keyspaces requires)."},
	{Name: "AWS_ROLE_ARN", Group: groupCassandra, Doc: "Web identity: role to assume (SigV4; read by the AWS default credential chain)."},
	{Name: "AWS_ROLE_SESSION_NAME", Group: groupCassandra, Doc: "Web identity: role session name (optional)."},
	{Name: "AWS_WEB_IDENTITY_TOKEN_FILE", Group: groupCassandra, Doc: "Web identity: token file (with AWS_ROLE_ARN; EKS IRSA sets both)."},
	{Name: "AWS_ACCESS_KEY_ID", Secret: true, Group: groupCassandra, Doc: "Static AWS key id (SigV4). Without CASSANDRA_USERNAME, SigV4 credentials come from the AWS SDK's default chain: these keys, web identity, shared config and profiles, container or instance roles."},
	{Name: "AWS_SECRET_ACCESS_KEY", Secret: true, Group: groupCassandra, Doc: "Static AWS secret key (SigV4)."},

	{Name: "WEBHOOK_URL", Secret: true, Group: groupAlerts, Doc: "Slack incoming webhook; alerts are off when unset."},
	{Name: "ALARM_ZK_LOWER_LIMIT_SEC", Group: groupAlerts, Doc: "Alert when verification of a batch took fewer seconds."},
	{Name: "ALARM_ZK_UPPER_LIMIT_SEC", Group: groupAlerts, Doc: "Alert when verification of a batch took more seconds."},
	{Name: "PRODUCER_DROP_ALERT_PERCENT", Default: "50", Group: groupAlerts, Doc: "New. Alert when the number of producers submitting in a batch drops by more than this percentage against the previous batch (0 disables). A window with no submission at all is always alerted."},
	{Name: "VALID_SHARE_ALERT_PERCENT", Group: groupAlerts, Doc: "New. Alert when the share of valid submissions in a batch drops below this percentage."},
	{Name: "ALERT_SUBSCRIPTIONS_FILE", Group: groupAlerts, Doc: "New. YAML file of per-producer alert subscriptions, reconciled into the database at the start of run (see docs/alerts.md)."},
	{Name: "ALERT_ALLOW_PRIVATE_NETWORKS", Group: groupAlerts, Doc: "New. Truthy: alert webhooks may point at private and loopback addresses, and use plain http to loopback (tests, closed networks). Link-local stays refused."},
	{Name: "ALERT_DRAIN_TIMEOUT", Default: "30s", Group: groupAlerts, Doc: "New. run --batches N: how long to wait at exit for the queued alerts to be delivered (Go duration)."},
	{Name: "ALERT_RETRY_BASE", Default: "5s", Group: groupAlerts, Doc: "New. First retry delay of a failed alert delivery; it doubles up to 360 times this (30 minutes with the default), over 25 attempts (about 8 hours with the default)."},
	{Name: "ALERT_RATE_PER_MINUTE", Default: "60", Group: groupAlerts, Doc: "New. Most messages a minute to one webhook URL (bursts of 5); the rest wait."},
	{Name: "PUBLIC_URL", Group: groupAlerts, Doc: "New. Base URL of coordinator serve; alert messages link to the producer's page there."},
	{Name: "ADMIN_API_TOKEN", Secret: true, Group: groupAlerts, Doc: "New. Bearer token allowed to create subscriptions for every producer (\"*\")."},

	{Name: "IGNORE_APPLICATION_STATUS", Group: groupSheets, Doc: "Truthy: skip the application status update from the spreadsheet."},
	{Name: "SPREADSHEET_NAME", Group: groupSheets, Doc: "Google Spreadsheet with the registration form responses."},
	{Name: "SPREADSHEET_CREDENTIALS_JSON", Group: groupSheets, Doc: "Path to the Google service-account JSON key."},

	{Name: "METRICS_ADDR", Default: ":8080", Group: groupOps, Doc: "New. Listen address of /healthz, /readyz and /metrics; set and empty disables it. The default listens on every interface, which is what a pod needs for its probes; outside a container prefer 127.0.0.1:8080. An address already in use fails start-up (exit 1)."},
	{Name: "LOG_LEVEL", Default: "info", Group: groupOps, Doc: "New. debug, info, warn or error. debug adds the time each phase of a batch took."},
	{Name: "LOG_FORMAT", Group: groupOps, Doc: "New. json or text (key=value, for people). Default: text when the output is a terminal, json otherwise. Verifier processes always log JSON, which the coordinator relays as structured records."},

	{Name: "API_ADDR", Default: "127.0.0.1:8081", Group: groupServe, Doc: "New. Listen address of coordinator serve: the read API, the stream, the web pages and its own /healthz, /readyz and /metrics."},
	{Name: "BATCH_END_EPOCH", Group: groupTasks, Doc: "go tool mage initDatabase: as init-database --batch-end-epoch (default now)."},
	{Name: "MINS_AGO", Group: groupTasks, Doc: "go tool mage initDatabase: as init-database --mins-ago."},
	{Name: "OVERRIDE_EMPTY", Group: groupTasks, Doc: "go tool mage initDatabase: truthy is init-database --override-empty."},
	{Name: "PRODUCERS", Default: "300", Group: groupTasks, Doc: "go tool mage demo: producers in the synthetic network."},
	{Name: "HOURS", Default: "4", Group: groupTasks, Doc: "go tool mage demo: hours of submissions (3 batches an hour)."},
	{Name: "SEED", Group: groupTasks, Doc: "go tool mage demo: seed of the synthetic network; the same seed gives the same network and scores (default: random, printed)."},
	{Name: "KEEP", Group: groupTasks, Doc: "go tool mage demo: truthy keeps the database and prints how to connect."},

	{Name: "TEST_DATABASE_URL", Secret: true, Group: groupTests, Doc: "Tests: the PostgreSQL server the tests create their databases on (a postgres:// URL with a user allowed to create databases). Unset: the server POSTGRES_HOST etc. point at (its postgres database), else a throwaway cluster from the system's initdb."},
	{Name: "PGTEST_DURABLE", Group: groupTests, Doc: "Tests: truthy starts the throwaway cluster with fsync on, as in production (the benchmarks set it)."},
	{Name: "CASSANDRA_TESTS", Group: groupTests, Doc: "Tests: truthy runs the Cassandra tests on a throwaway Cassandra started by tools/cassandra/start.sh (java 17 and mvn). Unset, they skip saying so."},
	{Name: "CASSANDRA_TEST_HOST", Group: groupTests, Doc: "Tests: a running Cassandra for the Cassandra tests instead of a throwaway one."},
	{Name: "CASSANDRA_TEST_PORT", Default: "9042", Group: groupTests, Doc: "Tests: CQL port of CASSANDRA_TEST_HOST."},
	{Name: "CASSANDRA_TEST_USERNAME", Default: "cassandra", Group: groupTests, Doc: "Tests: user on CASSANDRA_TEST_HOST."},
	{Name: "CASSANDRA_TEST_PASSWORD", Default: "cassandra", Secret: true, Group: groupTests, Doc: "Tests: password of CASSANDRA_TEST_USERNAME."},
	{Name: "CASSANDRA_TEST_CA", Group: groupTests, Doc: "Tests: CA file of CASSANDRA_TEST_HOST's TLS certificate."},
	{Name: "KUBE_TOOLS_DIR", Group: groupTests, Doc: "Tests: directory holding bin/ with the kube-apiserver, etcd and kube-controller-manager the Kubernetes tests run (default: ~/.cache/uptime-coordinator/kube-<version>, where tools/kube/build.sh puts them)."},
}

func lookupVar(name string) (Var, bool) {
	for _, v := range Vars {
		if v.Name == name {
			return v, true
		}
	}
	return Var{}, false
}
