package kubernetes_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/deploy/helm/helmtest"
	"github.com/delegation-program/uptime-coordinator/workers"
	kubeworker "github.com/delegation-program/uptime-coordinator/workers/kubernetes"
	"github.com/delegation-program/uptime-coordinator/workers/kubernetes/kubetest"
)

// coordinatorBin is the coordinator binary built by TestMain; the fake
// kubelet runs its verify subcommand in place of the verifier image.
var coordinatorBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kubeworker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	coordinatorBin = filepath.Join(dir, "coordinator")
	build := exec.Command("go", "build", "-o", coordinatorBin, "../../cmd/coordinator")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the coordinator binary: %v\n%s", err, out)
		return 1
	}
	return pgtest.Main(m)
}

// Test secret values: none may appear in a stored Job or in the launcher's
// log.
var testSecrets = map[string]string{
	"POSTGRES_PASSWORD":     "pg-Secret-0xC0FFEE",
	"CASSANDRA_PASSWORD":    "cass-Secret-0xBADC0DE",
	"AWS_ACCESS_KEY_ID":     "AKIA-Secret-0xFEED",
	"AWS_SECRET_ACCESS_KEY": "aws-Secret-0xDEADBEEF",
}

// baseVars is a valid kubernetes-mode configuration.
func baseVars() map[string]string {
	return map[string]string{
		"WORKER_MODE":               "kubernetes",
		"POSTGRES_HOST":             "127.0.0.1",
		"POSTGRES_DB":               "delegation",
		"POSTGRES_USER":             "coordinator",
		"WORKER_IMAGE":              "registry.invalid/delegation-verify",
		"WORKER_TAG":                "1.2.3",
		"AUTH_VOLUME_MOUNT_PATH":    "/auth",
		"IGNORE_APPLICATION_STATUS": "1",
		"RETRY_COUNT":               "0",
		"WORKER_TIMEOUT":            "2m",
	}
}

func loadConfig(t *testing.T, vars map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Load(func(name string) (string, bool) { v, ok := vars[name]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// events counts what a Launcher reports.
type events struct{ started, failed, retried atomic.Int32 }

func (e *events) Started(mode string) { e.check(mode); e.started.Add(1) }
func (e *events) Failed(mode string)  { e.check(mode); e.failed.Add(1) }
func (e *events) Retried(mode string) { e.check(mode); e.retried.Add(1) }
func (e *events) check(mode string) {
	if mode != kubeworker.Mode {
		panic("unexpected mode " + mode)
	}
}

func (e *events) String() string {
	return fmt.Sprintf("started=%d failed=%d retried=%d", e.started.Load(), e.failed.Load(), e.retried.Load())
}

var _ workers.Events = (*events)(nil)

// logBuffer collects a launcher's log lines, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLogger returns a logger into a buffer that the test prints when it
// fails, and checks for secret values when it ends.
func newLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	t.Cleanup(func() {
		out := b.String()
		for name, v := range testSecrets {
			if strings.Contains(out, v) {
				t.Errorf("the launcher logged the value of %s", name)
			}
		}
		if t.Failed() {
			t.Logf("launcher log:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// namespace prepares a namespace as the Helm chart would: its
// ServiceAccounts (deploy/helm/uptime-coordinator) and the workers' Secret
// holding testSecrets.
func namespace(t *testing.T, c *kubetest.Cluster, name string, cfg *config.Config) {
	t.Helper()
	accounts(t, c, name)
	cs := c.Clientset()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cfg.Kubernetes.SecretName}, StringData: maps.Clone(testSecrets)}
	if _, err := cs.CoreV1().Secrets(name).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Secret: %v", err)
	}
}

// accounts creates namespace ns with the ServiceAccounts (the workers' one
// included) and the worker entrypoint ConfigMap the Helm chart renders, and
// no Secret.
func accounts(t *testing.T, c *kubetest.Cluster, ns string) {
	t.Helper()
	c.CreateNamespace(t, ns)
	objs := chartObjects(t, ns)
	for _, sa := range helmtest.Find[*corev1.ServiceAccount](objs) {
		if _, err := c.Clientset().CoreV1().ServiceAccounts(ns).Create(t.Context(), sa, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ServiceAccount %s: %v", sa.Name, err)
		}
	}
	for _, cm := range helmtest.Find[*corev1.ConfigMap](objs) {
		if _, err := c.Clientset().CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ConfigMap %s: %v", cm.Name, err)
		}
	}
}

// coordinatorAccount is the coordinator's ServiceAccount as the chart names
// it for the release chartRelease.
const (
	chartRelease       = "delegation-verify-coordinator"
	coordinatorAccount = "delegation-verify-coordinator"
)

// chartObjects renders the Helm chart as release chartRelease in namespace
// ns, with the required values filled in.
func chartObjects(t *testing.T, ns string) []runtime.Object {
	t.Helper()
	return helmtest.Decode(t, helmtest.MustRender(t, helmtest.Release{Name: chartRelease, Namespace: ns}, map[string]any{
		"coordinator": map[string]any{
			"postgres": map[string]any{"db": "delegation", "user": "coordinator", "password": testSecrets["POSTGRES_PASSWORD"]},
			"worker":   map[string]any{"image": "registry.invalid/delegation-verify", "tag": "1.2.3"},
		},
	}))
}

// behaviour tells the fake kubelet what the verifier of each mini-batch
// does: "ok" (default), "fail" or "block" (until release is closed).
type behaviour struct {
	mu      sync.Mutex
	byPart  map[string]string
	release chan struct{}
	runs    map[string]int // job name -> pods run
	envs    map[string]map[string]string
}

func newBehaviour() *behaviour {
	return &behaviour{byPart: map[string]string{}, release: make(chan struct{}), runs: map[string]int{}, envs: map[string]map[string]string{}}
}

func (b *behaviour) set(part, what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byPart[part] = what
}

func (b *behaviour) runCount(job string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs[job]
}

// run is the fake kubelet's RunFunc: it resolves the Pod's environment (so
// every secretKeyRef must resolve) and acts as told.
func (b *behaviour) run(cs kubernetes.Interface) kubetest.RunFunc {
	return func(ctx context.Context, pod *corev1.Pod) error {
		env, err := kubetest.EnvOf(ctx, cs, pod)
		if err != nil {
			return err
		}
		job := pod.Labels[batchv1.JobNameLabel]
		b.mu.Lock()
		b.runs[job]++
		b.envs[job] = env
		what := b.byPart[pod.Labels[kubeworker.LabelPart]]
		b.mu.Unlock()
		switch what {
		case "fail":
			// The message carries a secret, which must reach no error or log.
			return fmt.Errorf("verifier exploded (connecting with password %s)", env["POSTGRES_PASSWORD"])
		case "block":
			select {
			case <-b.release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
}

// windowJobs lists the Jobs of a batch window.
func windowJobs(t *testing.T, cs kubernetes.Interface, ns string, w coordinator.Window) []batchv1.Job {
	t.Helper()
	sel := labels.SelectorFromSet(labels.Set{
		kubeworker.LabelWindowStart: fmt.Sprint(w.Start.Unix()),
		kubeworker.LabelWindowEnd:   fmt.Sprint(w.End.Unix()),
	})
	list, err := cs.BatchV1().Jobs(ns).List(t.Context(), metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func jobNames(jobs []batchv1.Job) []string {
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	return names
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// eventually polls cond every 100 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, d, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting %v for %s: %v", d, what, err)
	}
}

// applyRBAC creates the Role and RoleBinding the Helm chart renders in ns.
func applyRBAC(t *testing.T, cs kubernetes.Interface, ns string) *rbacv1.Role {
	t.Helper()
	objs := chartObjects(t, ns)
	roles := helmtest.Find[*rbacv1.Role](objs)
	bindings := helmtest.Find[*rbacv1.RoleBinding](objs)
	if len(roles) != 1 || len(bindings) != 1 {
		t.Fatalf("the chart renders %d Roles and %d RoleBindings, want 1 each", len(roles), len(bindings))
	}
	if _, err := cs.RbacV1().Roles(ns).Create(t.Context(), roles[0], metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the chart's Role: %v", err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(t.Context(), bindings[0], metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the chart's RoleBinding: %v", err)
	}
	return roles[0]
}

func isForbidden(err error) bool { return apierrors.IsForbidden(err) }

// newLauncher is kubeworker.New with the options of cfg, as the coordinator
// builds them.
func newLauncher(cfg *config.Config, cs kubernetes.Interface, ns string, log *slog.Logger, opts ...kubeworker.Option) *kubeworker.Launcher {
	return kubeworker.New(cfg.WorkerOptions(), cfg.Kubernetes, cs, ns, log, opts...)
}
