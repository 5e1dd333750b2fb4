package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kubeworker "github.com/delegation-program/uptime-coordinator/workers/kubernetes"
	"github.com/delegation-program/uptime-coordinator/workers/kubernetes/kubetest"
)

// testPreflight: at start-up a missing worker Secret, or a Secret missing a
// key the Jobs will reference, fails with one message naming the Secret, the
// keys and the way out; a complete Secret, no secret at all, or
// compatibility mode pass.
func testPreflight(t *testing.T, c *kubetest.Cluster) {
	const ns = "preflight"
	cs := c.Clientset()
	ctx := t.Context()
	vars := baseVars()
	maps.Copy(vars, map[string]string{"POSTGRES_PASSWORD": testSecrets["POSTGRES_PASSWORD"], "CASSANDRA_USERNAME": "svc",
		"CASSANDRA_PASSWORD": testSecrets["CASSANDRA_PASSWORD"]})
	cfg := loadConfig(t, vars)
	accounts(t, c, ns)
	log, logs := newLogger(t)
	l := newLauncher(cfg, cs, ns, log)

	err := l.Preflight(ctx)
	for _, want := range []string{`worker Secret "delegation-verify-coordinator" (WORKER_SECRET_NAME) does not exist in namespace preflight`,
		"CASSANDRA_PASSWORD, POSTGRES_PASSWORD", "set WORKER_SECRET_NAME to the empty string"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Preflight without the Secret: %v, want it to say %q", err, want)
		}
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cfg.Kubernetes.SecretName},
		StringData: map[string]string{"POSTGRES_PASSWORD": testSecrets["POSTGRES_PASSWORD"], "UNRELATED": "x"}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = l.Preflight(ctx)
	if err == nil || !strings.Contains(err.Error(), `lacks the key(s) CASSANDRA_PASSWORD that the worker Jobs reference`) ||
		strings.Contains(err.Error(), "POSTGRES_PASSWORD") {
		t.Errorf("Preflight with a key missing: %v, want it to name CASSANDRA_PASSWORD only", err)
	}

	secret.StringData["CASSANDRA_PASSWORD"] = testSecrets["CASSANDRA_PASSWORD"]
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Preflight(ctx); err != nil {
		t.Errorf("Preflight with a complete Secret: %v", err)
	}

	// No secret set: nothing to check, even without a Secret.
	accounts(t, c, "nosecret")
	if err := newLauncher(loadConfig(t, baseVars()), cs, "nosecret", log).Preflight(ctx); err != nil {
		t.Errorf("Preflight with no secret configured: %v", err)
	}

	// Compatibility mode: a warning, no Secret check.
	compat := maps.Clone(vars)
	compat["WORKER_SECRET_NAME"] = ""
	if err := newLauncher(loadConfig(t, compat), cs, "nosecret", log).Preflight(ctx); err != nil {
		t.Errorf("Preflight in compatibility mode: %v", err)
	}

	// The workers' ServiceAccount and entrypoint ConfigMap must exist too:
	// without them the Jobs would get no pod, or pods that never start.
	c.CreateNamespace(t, "bare")
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{baseVars(), `worker ServiceAccount "delegation-verify" (WORKER_SERVICE_ACCOUNT) does not exist in namespace bare`},
		{map[string]string{"WORKER_SERVICE_ACCOUNT": "default"}, `worker ConfigMap "delegation-verify-coordinator-worker" (WORKER_ENTRYPOINT_CONFIGMAP) does not exist in namespace bare`},
		{map[string]string{"WORKER_SERVICE_ACCOUNT": "default", "WORKER_SECRET_NAME": ""}, `worker ConfigMap "delegation-verify-coordinator-worker"`},
	} {
		v := baseVars()
		maps.Copy(v, tc.vars)
		err := newLauncher(loadConfig(t, v), cs, "bare", log).Preflight(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Preflight in a bare namespace with %v: %v, want %q", tc.vars, err, tc.want)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"WORKER_SECRET_NAME is empty: compatibility mode") {
		t.Errorf("no compatibility-mode warning in the log:\n%s", logs)
	}
	if strings.Contains(err2str(l.Preflight(ctx)), testSecrets["POSTGRES_PASSWORD"]) {
		t.Error("a preflight message shows a secret")
	}
}

func err2str(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// testCompatibilityMode: with WORKER_SECRET_NAME set to the empty string the
// Jobs carry the secrets as plain values, as the original's did, and run
// without any Secret.
func testCompatibilityMode(t *testing.T, c *kubetest.Cluster) {
	const ns = "compat"
	cs := c.Clientset()
	vars := baseVars()
	maps.Copy(vars, testSecrets)
	maps.Copy(vars, map[string]string{"WORKER_SECRET_NAME": "", "CASSANDRA_USERNAME": "svc"})
	cfg := loadConfig(t, vars)
	accounts(t, c, ns)
	b := newBehaviour()
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithClock(clock))
	if err := l.Preflight(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(t.Context(), testBatch, testBatch.Split(1)); err != nil {
		t.Fatalf("Verify in compatibility mode: %v", err)
	}
	jobs := windowJobs(t, cs, ns, testBatch)
	if len(jobs) != 1 {
		t.Fatalf("jobs %v", jobNames(jobs))
	}
	for _, ctr := range append(jobs[0].Spec.Template.Spec.InitContainers, jobs[0].Spec.Template.Spec.Containers...) {
		got := map[string]string{}
		for _, e := range ctr.Env {
			if e.ValueFrom != nil {
				t.Errorf("container %s: %s comes from %+v, want a plain value", ctr.Name, e.Name, e.ValueFrom)
			}
			got[e.Name] = e.Value
		}
		for name, v := range testSecrets {
			if got[name] != v {
				t.Errorf("container %s: %s = %q, want the configured value", ctr.Name, name, got[name])
			}
		}
	}
	if env := b.envs[jobs[0].Name]; env["POSTGRES_PASSWORD"] != testSecrets["POSTGRES_PASSWORD"] {
		t.Errorf("the verifier got POSTGRES_PASSWORD %q", env["POSTGRES_PASSWORD"])
	}
}

// testStuckPods: a verifier Pod held in CreateContainerConfigError (a key
// removed from the Secret after start-up: the fake kubelet resolves the env
// as a kubelet would and holds the Pod), ImagePullBackOff or Unschedulable
// fails the attempt within WORKER_STUCK_TIMEOUT, long before WORKER_TIMEOUT,
// with the Pod's reason; the Job is deleted so that the retry starts afresh.
func testStuckPods(t *testing.T, c *kubetest.Cluster) {
	const ns = "stuck"
	cs := c.Clientset()
	ctx := t.Context()
	vars := baseVars()
	vars["POSTGRES_PASSWORD"] = testSecrets["POSTGRES_PASSWORD"]
	vars["WORKER_STUCK_TIMEOUT"] = "2s"
	vars["WORKER_TIMEOUT"] = "2m"
	cfg := loadConfig(t, vars)
	accounts(t, c, ns)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cfg.Kubernetes.SecretName},
		StringData: map[string]string{"POSTGRES_PASSWORD": testSecrets["POSTGRES_PASSWORD"]}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := newBehaviour()
	k := kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	ev := &events{}
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(ev), kubeworker.WithClock(clock))
	if err := l.Preflight(ctx); err != nil {
		t.Fatal(err)
	}
	// The key goes away after the start-up check.
	secret.StringData = nil
	secret.Data = map[string][]byte{"OTHER": []byte("x")}
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	hold := map[string]*kubetest.Hold{ // by mini-batch of each case
		"image":   {Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.invalid/delegation-verify:1.2.3"`},
		"nowhere": {Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient memory."},
	}
	var current atomic.Value // the case running
	current.Store("")
	k.SetHold(func(ctx context.Context, pod *corev1.Pod) *kubetest.Hold {
		if h := hold[current.Load().(string)]; h != nil {
			return h
		}
		if _, err := kubetest.EnvOf(ctx, cs, pod); err != nil {
			return &kubetest.Hold{Reason: "CreateContainerConfigError", Message: err.Error()}
		}
		return nil
	})

	for i, tc := range []struct{ name, reason, detail string }{
		{"config", "CreateContainerConfigError", "POSTGRES_PASSWORD"},
		{"image", "ImagePullBackOff", "Back-off pulling image"},
		{"nowhere", "Unschedulable", "Insufficient memory"},
	} {
		current.Store(tc.name)
		w := testBatch
		w.Start, w.End = w.Start.Add(time.Duration(i)*time.Hour), w.End.Add(time.Duration(i)*time.Hour)
		begin := time.Now()
		err := l.Verify(ctx, w, w.Split(1))
		took := time.Since(begin)
		t.Logf("%s: Verify returned after %v: %v", tc.name, took.Round(time.Millisecond), err)
		if !errors.Is(err, kubeworker.ErrJobFailed) || !strings.Contains(err.Error(), "stuck in "+tc.reason) ||
			!strings.Contains(err.Error(), "WORKER_STUCK_TIMEOUT") || !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("%s: Verify = %v, want ErrJobFailed naming %s and %q", tc.name, err, tc.reason, tc.detail)
		}
		if took < 2*time.Second || took > 20*time.Second {
			t.Errorf("%s: Verify took %v with WORKER_STUCK_TIMEOUT=2s", tc.name, took)
		}
		eventually(t, 30*time.Second, tc.name+": the stuck job to be deleted", func() bool { return len(windowJobs(t, cs, ns, w)) == 0 })
	}
	if ev.failed.Load() != 3 || ev.started.Load() != 3 {
		t.Errorf("events %v, want started=3 failed=3", ev)
	}

	// Fixed (the key is back): the retry of the first window succeeds.
	current.Store("")
	secret.Data = map[string][]byte{"POSTGRES_PASSWORD": []byte(testSecrets["POSTGRES_PASSWORD"])}
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx, testBatch, testBatch.Split(1)); err != nil {
		t.Errorf("Verify once the Secret is fixed: %v", err)
	}
}

// testSecurityContext: the worker Jobs carry the configured pod and
// container security contexts (the defaults, or custom JSON), accepted by
// the API server.
func testSecurityContext(t *testing.T, c *kubetest.Cluster) {
	const ns = "secctx"
	cs := c.Clientset()
	accounts(t, c, ns)
	b := newBehaviour()
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	for i, tc := range []struct {
		vars           map[string]string
		pod, container string
	}{
		{nil, `{"seccompProfile":{"type":"RuntimeDefault"}}`,
			`{"capabilities":{"drop":["ALL"]},"allowPrivilegeEscalation":false,"seccompProfile":{"type":"RuntimeDefault"}}`},
		{map[string]string{
			"WORKER_POD_SECURITY_CONTEXT":       `{"runAsNonRoot":true,"runAsUser":1000,"fsGroup":1000,"seccompProfile":{"type":"RuntimeDefault"}}`,
			"WORKER_CONTAINER_SECURITY_CONTEXT": `{"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}`,
		}, `{"runAsUser":1000,"runAsNonRoot":true,"fsGroup":1000,"seccompProfile":{"type":"RuntimeDefault"}}`,
			`{"capabilities":{"drop":["ALL"]},"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false}`},
	} {
		vars := baseVars()
		maps.Copy(vars, tc.vars)
		l := newLauncher(loadConfig(t, vars), cs, ns, log, kubeworker.WithClock(clock))
		w := testBatch
		w.Start, w.End = w.Start.Add(time.Duration(i)*time.Hour), w.End.Add(time.Duration(i)*time.Hour)
		if err := l.Verify(t.Context(), w, w.Split(1)); err != nil {
			t.Fatalf("case %d: Verify: %v", i, err)
		}
		jobs := windowJobs(t, cs, ns, w)
		if len(jobs) != 1 {
			t.Fatalf("case %d: jobs %v", i, jobNames(jobs))
		}
		spec := jobs[0].Spec.Template.Spec
		if got, _ := json.Marshal(spec.SecurityContext); string(got) != tc.pod {
			t.Errorf("case %d: pod securityContext %s, want %s", i, got, tc.pod)
		}
		for _, ctr := range append(spec.InitContainers, spec.Containers...) {
			if got, _ := json.Marshal(ctr.SecurityContext); string(got) != tc.container {
				t.Errorf("case %d: container %s securityContext %s, want %s", i, ctr.Name, got, tc.container)
			}
		}
	}
}
