package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
	kubeworker "github.com/delegation-program/uptime-coordinator/workers/kubernetes"
	"github.com/delegation-program/uptime-coordinator/workers/kubernetes/kubetest"
)

var (
	testNow   = time.Date(2024, 6, 1, 12, 34, 56, 0, time.UTC)
	testBatch = coordinator.Window{
		Start: time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC),
		End:   time.Date(2024, 6, 1, 12, 20, 0, 0, time.UTC),
	}
)

func clock() time.Time { return testNow }

// TestKubernetesWorkers runs every scenario against one real control plane
// (etcd, kube-apiserver, kube-controller-manager), each in a namespace of its
// own with a fake kubelet.
func TestKubernetesWorkers(t *testing.T) {
	c := kubetest.Start(t)
	t.Run("JobSpec", func(t *testing.T) { t.Parallel(); testJobSpec(t, c) })
	t.Run("FailingWorker", func(t *testing.T) { t.Parallel(); testFailingWorker(t, c) })
	t.Run("Adoption", func(t *testing.T) { t.Parallel(); testAdoption(t, c) })
	t.Run("Timeout", func(t *testing.T) { t.Parallel(); testTimeout(t, c) })
	t.Run("TTLZero", func(t *testing.T) { t.Parallel(); testTTLZero(t, c) })
	t.Run("RBAC", func(t *testing.T) { t.Parallel(); testRBAC(t, c) })
	t.Run("EndToEnd", func(t *testing.T) { t.Parallel(); testEndToEnd(t, c) })
	t.Run("Client", func(t *testing.T) { t.Parallel(); testClient(t, c) })
	t.Run("Preflight", func(t *testing.T) { t.Parallel(); testPreflight(t, c) })
	t.Run("CompatibilityMode", func(t *testing.T) { t.Parallel(); testCompatibilityMode(t, c) })
	t.Run("StuckPods", func(t *testing.T) { t.Parallel(); testStuckPods(t, c) })
	t.Run("SecurityContext", func(t *testing.T) { t.Parallel(); testSecurityContext(t, c) })
}

// testJobSpec checks that the API server accepts the Jobs and that they
// carry everything the original coordinator set, with secrets only as
// secretKeyRefs.
func testJobSpec(t *testing.T, c *kubetest.Cluster) {
	const ns = "spec"
	cs := c.Clientset()
	ctx := t.Context()
	vars := baseVars()
	maps.Copy(vars, testSecrets)
	maps.Copy(vars, map[string]string{
		"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "bpu", "CASSANDRA_HOST": "localhost", "CASSANDRA_PORT": "9142",
		"CASSANDRA_USERNAME": "svc", "AWS_REGION": "us-west-2", "AWS_S3_BUCKET": "blocks", "NETWORK_NAME": "mainnet",
		"NO_CHECKS": "1", "POSTGRES_SSLMODE": "disable", "SPREAD_MAX_SKEW": "2", "K8S_NODE_POOL": "verifiers",
		"WORKER_CPU_REQUEST": "500m", "WORKER_MEMORY_REQUEST": "1Gi", "WORKER_CPU_LIMIT": "2", "WORKER_MEMORY_LIMIT": "2Gi",
		"WORKER_TTL_SECONDS_AFTER_FINISHED": "3600", "IMAGE_PULL_POLICY": "Always", "RETRY_COUNT": "2",
	})
	cfg := loadConfig(t, vars)
	namespace(t, c, ns, cfg)
	b := newBehaviour()
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	ev := &events{}
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(ev), kubeworker.WithClock(clock))

	parts := testBatch.Split(2)
	begin := time.Now()
	if err := l.Verify(ctx, testBatch, parts); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	t.Logf("2 jobs completed in %v", time.Since(begin).Round(time.Millisecond))
	if ev.started.Load() != 2 || ev.failed.Load() != 0 || ev.retried.Load() != 0 {
		t.Errorf("events %v, want 2 started", ev)
	}

	jobs := windowJobs(t, cs, ns, testBatch)
	if len(jobs) != 2 {
		t.Fatalf("got jobs %v, want 2", jobNames(jobs))
	}
	slices.SortFunc(jobs, func(a, b batchv1.Job) int { return strings.Compare(a.Name, b.Name) })
	const group = "delegation-verify-24-06-01-12-34"
	// The two mini-batches of 12:00-12:20, written out as the verifier
	// receives them.
	bounds := [][2]string{
		{"2024-06-01 12:00:00.0+0000", "2024-06-01 12:10:00.0+0000"},
		{"2024-06-01 12:10:00.0+0000", "2024-06-01 12:20:00.0+0000"},
	}
	for i, job := range jobs {
		name := []string{group + "-0", group + "-1"}[i]
		if job.Name != name {
			t.Errorf("job %d named %s, want %s", i, job.Name, name)
		}
		if errs := validation.IsDNS1123Label(job.Name); len(errs) > 0 {
			t.Errorf("job name %s: %v", job.Name, errs)
		}
		if !hasCondition(&job, batchv1.JobComplete) {
			t.Errorf("job %s not Complete: %+v", job.Name, job.Status.Conditions)
		}
		wantLabels := map[string]string{
			"job-group-name": group, "app.kubernetes.io/managed-by": "uptime-coordinator",
			"uptime.delegation/window-start": "1717243200", "uptime.delegation/window-end": "1717244400",
			"uptime.delegation/part": []string{"0", "1"}[i], "uptime.delegation/parts": "2",
		}
		if !maps.Equal(job.Labels, wantLabels) {
			t.Errorf("job %s labels %v, want %v", job.Name, job.Labels, wantLabels)
		}
		if job.Annotations[kubeworker.AnnotationStart] != bounds[i][0] || job.Annotations[kubeworker.AnnotationEnd] != bounds[i][1] {
			t.Errorf("job %s annotations %v", job.Name, job.Annotations)
		}
		spec := job.Spec
		if spec.BackoffLimit == nil || *spec.BackoffLimit != 2 {
			t.Errorf("backoffLimit %v, want 2 (RETRY_COUNT)", spec.BackoffLimit)
		}
		if spec.TTLSecondsAfterFinished == nil || *spec.TTLSecondsAfterFinished != 3600 {
			t.Errorf("ttlSecondsAfterFinished %v, want 3600", spec.TTLSecondsAfterFinished)
		}
		tmpl := spec.Template
		if tmpl.Annotations["karpenter.sh/do-not-disrupt"] != "true" {
			t.Errorf("pod annotations %v", tmpl.Annotations)
		}
		if tmpl.Labels["job-group-name"] != group {
			t.Errorf("pod labels %v", tmpl.Labels)
		}
		pod := tmpl.Spec
		if pod.ServiceAccountName != "delegation-verify" || pod.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("serviceAccountName %q restartPolicy %q", pod.ServiceAccountName, pod.RestartPolicy)
		}
		if !maps.Equal(pod.NodeSelector, map[string]string{"karpenter.sh/nodepool": "verifiers"}) {
			t.Errorf("nodeSelector %v", pod.NodeSelector)
		}
		if len(pod.Tolerations) != 1 || pod.Tolerations[0] != (corev1.Toleration{Key: "karpenter.sh/nodepool", Operator: corev1.TolerationOpExists}) {
			t.Errorf("tolerations %+v", pod.Tolerations)
		}
		if tsc := pod.TopologySpreadConstraints; len(tsc) != 1 || tsc[0].MaxSkew != 2 || tsc[0].TopologyKey != "kubernetes.io/hostname" ||
			tsc[0].WhenUnsatisfiable != corev1.DoNotSchedule || tsc[0].LabelSelector == nil ||
			!maps.Equal(tsc[0].LabelSelector.MatchLabels, map[string]string{"job-group-name": group}) {
			t.Errorf("topologySpreadConstraints %+v", tsc)
		}
		if len(pod.Volumes) != 2 || pod.Volumes[0].Name != "auth-volume" || pod.Volumes[0].EmptyDir == nil ||
			pod.Volumes[1].ConfigMap == nil || pod.Volumes[1].ConfigMap.Name != "delegation-verify-coordinator-worker" ||
			pod.Volumes[1].ConfigMap.DefaultMode == nil || *pod.Volumes[1].ConfigMap.DefaultMode != 0o777 {
			t.Errorf("volumes %+v", pod.Volumes)
		}
		image := "registry.invalid/delegation-verify:1.2.3"
		// The original coordinator's variables in its order; secrets as
		// references to the worker Secret (WORKER_SECRET_NAME's default).
		secret := func(key string) corev1.EnvVar {
			return corev1.EnvVar{Name: key, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "delegation-verify-coordinator"}, Key: key, Optional: new(false),
			}}}
		}
		wantEnv := []corev1.EnvVar{
			{Name: "AWS_ROLE_SESSION_NAME", Value: name},
			{Name: "AWS_REGION", Value: "us-west-2"},
			{Name: "AWS_DEFAULT_REGION", Value: "us-west-2"},
			{Name: "AWS_S3_BUCKET", Value: "blocks"},
			{Name: "AWS_KEYSPACE", Value: "bpu"},
			{Name: "CASSANDRA_HOST", Value: "127.0.0.1"}, // localhost, resolved
			{Name: "CASSANDRA_PORT", Value: "9142"},
			{Name: "CASSANDRA_USERNAME", Value: "svc"},
			secret("CASSANDRA_PASSWORD"),
			{Name: "SSL_CERTFILE", Value: "/root/.cassandra/sf-class2-root.crt"},
			{Name: "AUTH_VOLUME_MOUNT_PATH", Value: "/auth"},
			{Name: "NETWORK_NAME", Value: "mainnet"},
			{Name: "START_TIMESTAMP", Value: bounds[i][0]},
			{Name: "END_TIMESTAMP", Value: bounds[i][1]},
			{Name: "NO_CHECKS", Value: "1"},
			secret("AWS_ACCESS_KEY_ID"),
			secret("AWS_SECRET_ACCESS_KEY"),
			{Name: "SUBMISSION_STORAGE", Value: "CASSANDRA"},
			{Name: "POSTGRES_HOST", Value: "127.0.0.1"},
			{Name: "POSTGRES_DB", Value: "delegation"},
			{Name: "POSTGRES_USER", Value: "coordinator"},
			secret("POSTGRES_PASSWORD"),
			{Name: "POSTGRES_PORT", Value: "5432"},
			{Name: "POSTGRES_SSLMODE", Value: "disable"},
		}
		if len(pod.InitContainers) != 1 {
			t.Fatalf("init containers %+v", pod.InitContainers)
		}
		ic := pod.InitContainers[0]
		if ic.Name != "delegation-verify-init" || ic.Image != image || !slices.Equal(ic.Command, []string{"ls"}) ||
			ic.ImagePullPolicy != corev1.PullAlways || len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].MountPath != "/auth" {
			t.Errorf("init container %+v", ic)
		}
		checkEnv(t, "init container", ic.Env, wantEnv)
		if len(pod.Containers) != 1 {
			t.Fatalf("containers %+v", pod.Containers)
		}
		mc := pod.Containers[0]
		if mc.Name != "delegation-verify" || mc.Image != image || !slices.Equal(mc.Command, []string{"/bin/entrypoint/entrypoint-worker.sh"}) ||
			mc.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("container %+v", mc)
		}
		if len(mc.VolumeMounts) != 2 || mc.VolumeMounts[0] != (corev1.VolumeMount{Name: "auth-volume", MountPath: "/auth"}) ||
			mc.VolumeMounts[1] != (corev1.VolumeMount{Name: "entrypoint-volume", MountPath: "/bin/entrypoint"}) {
			t.Errorf("volume mounts %+v", mc.VolumeMounts)
		}
		for _, q := range []struct {
			got  resource.Quantity
			want string
		}{
			{mc.Resources.Requests[corev1.ResourceCPU], "500m"}, {mc.Resources.Requests[corev1.ResourceMemory], "1Gi"},
			{mc.Resources.Limits[corev1.ResourceCPU], "2"}, {mc.Resources.Limits[corev1.ResourceMemory], "2Gi"},
		} {
			if q.got.Cmp(resource.MustParse(q.want)) != 0 {
				t.Errorf("resources %+v", mc.Resources)
			}
		}
		checkEnv(t, "container", mc.Env, wantEnv)

		// What the verifier really gets: the Pod's environment as the fake
		// kubelet resolved it, secrets read from the Secret.
		got := b.envs[job.Name]
		for k, v := range map[string]string{
			"POSTGRES_PASSWORD": testSecrets["POSTGRES_PASSWORD"], "AWS_SECRET_ACCESS_KEY": testSecrets["AWS_SECRET_ACCESS_KEY"],
			"START_TIMESTAMP": bounds[i][0], "END_TIMESTAMP": bounds[i][1],
			"SSL_CERTFILE": "/root/.cassandra/sf-class2-root.crt", "AWS_ROLE_SESSION_NAME": name, "CASSANDRA_HOST": "127.0.0.1", "NO_CHECKS": "1",
		} {
			if got[k] != v {
				t.Errorf("pod of %s: %s = %q, want %q", job.Name, k, got[k], v)
			}
		}
	}
	checkNoSecrets(t, cs, ns)

	// A minimal configuration: no TTL, node pool, resources nor secrets.
	// Batch names are taken from the same minute, so this batch's group gets
	// a suffix.
	minimal := loadConfig(t, baseVars())
	l = newLauncher(minimal, cs, ns, log, kubeworker.WithClock(clock))
	next := coordinator.Window{Start: testBatch.End, End: testBatch.End.Add(20 * time.Minute)}
	if err := l.Verify(ctx, next, next.Split(1)); err != nil {
		t.Fatalf("Verify with a minimal configuration: %v", err)
	}
	jobs = windowJobs(t, cs, ns, next)
	if len(jobs) != 1 {
		t.Fatalf("got jobs %v, want 1", jobNames(jobs))
	}
	job := jobs[0]
	if want := group + "-b2-0"; job.Name != want {
		t.Errorf("job named %s, want %s (a group name of another window is not reused)", job.Name, want)
	}
	pod := job.Spec.Template.Spec
	mc := pod.Containers[0]
	if job.Spec.TTLSecondsAfterFinished != nil || pod.NodeSelector != nil || pod.Tolerations != nil ||
		mc.Resources.Requests != nil || mc.Resources.Limits != nil || mc.ImagePullPolicy != corev1.PullIfNotPresent ||
		*job.Spec.BackoffLimit != 0 {
		t.Errorf("minimal job: ttl %v nodeSelector %v tolerations %v resources %+v pullPolicy %s backoffLimit %d",
			job.Spec.TTLSecondsAfterFinished, pod.NodeSelector, pod.Tolerations, mc.Resources, mc.ImagePullPolicy, *job.Spec.BackoffLimit)
	}
	for _, e := range mc.Env {
		if e.ValueFrom != nil || strings.Contains(e.Name, "PASSWORD") || strings.HasPrefix(e.Name, "AWS_ACCESS") || strings.HasPrefix(e.Name, "AWS_SECRET") {
			t.Errorf("unset secret %s is in the env: %+v", e.Name, e)
		}
	}
}

func checkEnv(t *testing.T, what string, got, want []corev1.EnvVar) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s env:\n got %s\nwant %s", what, g, w)
	}
	secrets := 0
	for _, e := range got {
		if _, ok := testSecrets[e.Name]; ok {
			secrets++
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != e.Name {
				t.Errorf("%s: secret %s is not a secretKeyRef: %+v", what, e.Name, e)
			}
		}
	}
	if secrets != len(testSecrets) {
		t.Errorf("%s: %d secrets in the env, want %d", what, secrets, len(testSecrets))
	}
}

// checkNoSecrets fails if a secret value appears anywhere in the stored
// Jobs of ns, or in their Pods other than in the status (where a verifier's
// own output may end up, as the failing verifier of these tests does).
func checkNoSecrets(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	jobs, err := cs.BatchV1().Jobs(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		pods.Items[i].Status = corev1.PodStatus{}
	}
	for what, obj := range map[string]any{"jobs": jobs, "pods": pods} {
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range testSecrets {
			if strings.Contains(string(data), v) {
				t.Errorf("the value of %s appears in the stored %s", name, what)
			}
		}
		if !strings.Contains(string(data), "secretKeyRef") {
			t.Errorf("no secretKeyRef in the stored %s", what)
		}
	}
}

// testFailingWorker: the job controller retries a failing verifier
// RETRY_COUNT times, then the Job fails and so does the batch.
func testFailingWorker(t *testing.T, c *kubetest.Cluster) {
	const ns = "failing"
	cs := c.Clientset()
	vars := baseVars()
	maps.Copy(vars, testSecrets)
	vars["RETRY_COUNT"] = "1"
	cfg := loadConfig(t, vars)
	namespace(t, c, ns, cfg)
	b := newBehaviour()
	b.set("0", "fail")
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	ev := &events{}
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(ev), kubeworker.WithClock(clock))

	begin := time.Now()
	err := l.Verify(t.Context(), testBatch, testBatch.Split(2))
	took := time.Since(begin)
	t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, kubeworker.ErrJobFailed) {
		t.Fatalf("Verify: %v, want ErrJobFailed", err)
	}
	job := "delegation-verify-24-06-01-12-34-0"
	msg := err.Error()
	for _, want := range []string{job, "mini-batch 0", "BackoffLimitExceeded", "after 2 pod failures", "exit code 1", "verifier exploded", "password ***"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	for name, v := range testSecrets {
		if strings.Contains(msg, v) {
			t.Errorf("the error holds the value of %s", name)
		}
	}
	if n := b.runCount(job); n != 2 {
		t.Errorf("verifier of %s ran %d times, want 2 (backoffLimit 1)", job, n)
	}
	if ev.started.Load() != 2 || ev.retried.Load() != 1 || ev.failed.Load() != 1 {
		t.Errorf("events %v, want started=2 failed=1 retried=1", ev)
	}
	checkNoSecrets(t, cs, ns)
}

// testAdoption: after a failed batch and a shutdown, restarted launchers
// adopt the window's Jobs: a Complete one counts as done, a running one is
// followed, a Failed one is replaced; no Job is duplicated.
func testAdoption(t *testing.T, c *kubetest.Cluster) {
	const ns = "adoption"
	cs := c.Clientset()
	cfg := loadConfig(t, baseVars())
	namespace(t, c, ns, cfg)
	b := newBehaviour()
	b.set("1", "block")
	b.set("2", "fail")
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, logs := newLogger(t)
	parts := testBatch.Split(3)
	group := "delegation-verify-24-06-01-12-34"

	// 1. Part 2 fails (backoffLimit 0); part 0 completes, part 1 runs on.
	first := &events{}
	err := newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(first), kubeworker.WithClock(clock)).Verify(t.Context(), testBatch, parts)
	if !errors.Is(err, kubeworker.ErrJobFailed) || !strings.Contains(err.Error(), group+"-2") {
		t.Fatalf("first Verify: %v, want the failure of %s", err, group+"-2")
	}
	byName := func() map[string]batchv1.Job {
		m := map[string]batchv1.Job{}
		for _, j := range windowJobs(t, cs, ns, testBatch) {
			m[j.Name] = j
		}
		return m
	}
	eventually(t, 30*time.Second, "part 0 to complete", func() bool {
		j, ok := byName()[group+"-0"]
		return ok && hasCondition(&j, batchv1.JobComplete)
	})
	failed := byName()[group+"-2"]

	// 2. A restarted coordinator, one minute later: the failed Job is
	// replaced (same mini-batch, new group name), then the coordinator is
	// stopped while parts 1 and 2 run.
	b.set("2", "block")
	later := func() time.Time { return testNow.Add(time.Minute) }
	second := &events{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(second), kubeworker.WithClock(later)).Verify(ctx, testBatch, parts)
	}()
	replacement := "delegation-verify-24-06-01-12-35-2"
	eventually(t, 30*time.Second, "the failed job to be replaced and its pod to run", func() bool {
		_, old := byName()[failed.Name]
		return !old && b.runCount(replacement) == 1
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("second Verify after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Verify did not return after its context was cancelled")
	}
	if second.started.Load() != 1 || second.retried.Load() != 1 || second.failed.Load() != 0 {
		t.Errorf("second launcher's events %v, want started=1 retried=1", second)
	}
	jobs := byName()
	wantNames := []string{group + "-0", group + "-1", replacement}
	if got := slices.Sorted(maps.Keys(jobs)); !slices.Equal(got, wantNames) {
		t.Fatalf("jobs after the shutdown %v, want %v", got, wantNames)
	}
	for _, name := range wantNames[1:] {
		j := jobs[name]
		if j.DeletionTimestamp != nil || hasCondition(&j, batchv1.JobFailed) || hasCondition(&j, batchv1.JobComplete) {
			t.Errorf("job %s was not left running at shutdown: %+v", name, j.Status)
		}
	}

	// 3. Restarted again: it creates nothing and completes once the running
	// verifiers finish.
	third := &events{}
	go func() {
		done <- newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(third), kubeworker.WithClock(clock)).Verify(t.Context(), testBatch, parts)
	}()
	eventually(t, 30*time.Second, "the third launcher to adopt the running jobs", func() bool {
		// Adopted: part 1 by the second launcher, parts 1 and 2 by the third.
		return strings.Count(logs.String(), "adopting running worker job") == 3
	})
	close(b.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("third Verify: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("third Verify did not complete")
	}
	if third.started.Load() != 0 || third.retried.Load() != 0 || third.failed.Load() != 0 {
		t.Errorf("third launcher's events %v, want none", third)
	}
	jobs = byName()
	if got := slices.Sorted(maps.Keys(jobs)); !slices.Equal(got, wantNames) {
		t.Errorf("jobs at the end %v, want %v (no duplicates)", got, wantNames)
	}
	for _, name := range wantNames {
		if j := jobs[name]; !hasCondition(&j, batchv1.JobComplete) {
			t.Errorf("job %s not Complete", name)
		}
		if n := b.runCount(name); n != 1 {
			t.Errorf("verifier of %s ran %d times, want 1", name, n)
		}
	}
}

// testTimeout: a batch whose Jobs outlive WORKER_TIMEOUT fails, and its
// unfinished Jobs are deleted with their Pods.
func testTimeout(t *testing.T, c *kubetest.Cluster) {
	const ns = "timeout"
	cs := c.Clientset()
	vars := baseVars()
	vars["WORKER_TIMEOUT"] = "3s"
	cfg := loadConfig(t, vars)
	namespace(t, c, ns, cfg)
	b := newBehaviour()
	b.set("0", "block")
	b.set("1", "block")
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	ev := &events{}
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(ev), kubeworker.WithClock(clock))

	begin := time.Now()
	err := l.Verify(t.Context(), testBatch, testBatch.Split(3))
	took := time.Since(begin)
	t.Logf("Verify returned after %v: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, workers.ErrTimeout) {
		t.Fatalf("Verify: %v, want ErrTimeout", err)
	}
	if took < 3*time.Second || took > 10*time.Second {
		t.Errorf("Verify took %v with WORKER_TIMEOUT=3s", took)
	}
	for _, i := range []int{0, 1} {
		if name := "delegation-verify-24-06-01-12-34-" + strconv.Itoa(i); !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name the unfinished job %s", err, name)
		}
	}
	if ev.started.Load() != 3 || ev.failed.Load() != 2 {
		t.Errorf("events %v, want started=3 failed=2", ev)
	}
	eventually(t, 30*time.Second, "the unfinished jobs and their pods to be deleted", func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded {
				running++
			}
		}
		jobs := windowJobs(t, cs, ns, testBatch)
		return len(jobs) == 1 && jobs[0].Name == "delegation-verify-24-06-01-12-34-2" && running == 0
	})
}

// testTTLZero: with WORKER_TTL_SECONDS_AFTER_FINISHED=0 the Jobs are deleted
// as soon as they complete, which must still count as completed.
func testTTLZero(t *testing.T, c *kubetest.Cluster) {
	const ns = "ttl-zero"
	cs := c.Clientset()
	vars := baseVars()
	vars["WORKER_TTL_SECONDS_AFTER_FINISHED"] = "0"
	cfg := loadConfig(t, vars)
	namespace(t, c, ns, cfg)
	b := newBehaviour()
	kubetest.StartKubelet(t, cs, ns, b.run(cs))
	log, _ := newLogger(t)
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithClock(clock))
	if err := l.Verify(t.Context(), testBatch, testBatch.Split(4)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	eventually(t, 30*time.Second, "the ttl-after-finished controller to delete the jobs", func() bool {
		return len(windowJobs(t, cs, ns, testBatch)) == 0
	})
}

// testRBAC runs the launcher as the ServiceAccount uptime-coordinator bound
// to the Role the Helm chart renders, and shows what that Role forbids.
func testRBAC(t *testing.T, c *kubetest.Cluster) {
	const ns = "rbac"
	admin := c.Clientset()
	ctx := t.Context()
	cfg := loadConfig(t, baseVars())
	namespace(t, c, ns, cfg)
	role := applyRBAC(t, admin, ns)
	b := newBehaviour()
	kubetest.StartKubelet(t, admin, ns, b.run(admin))
	cs, err := kubernetes.NewForConfig(c.ConfigForToken(c.TokenFor(t, ns, coordinatorAccount)))
	if err != nil {
		t.Fatal(err)
	}
	can := func(verb, resource, sub, group string) bool {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Group: group, Resource: resource, Subresource: sub,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	// The authorizer sees a new binding through its informer.
	eventually(t, 10*time.Second, "the role binding to take effect", func() bool { return can("create", "jobs", "", "batch") })

	log, _ := newLogger(t)
	ev := &events{}
	l := newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(ev), kubeworker.WithClock(clock))
	if err := l.Preflight(ctx); err != nil {
		t.Fatalf("Preflight as uptime-coordinator: %v", err)
	}
	if err := l.Verify(ctx, testBatch, testBatch.Split(2)); err != nil {
		t.Fatalf("Verify as uptime-coordinator: %v", err)
	}
	// A failure: the launcher reads the failed pod (pods list) ...
	next := coordinator.Window{Start: testBatch.End, End: testBatch.End.Add(20 * time.Minute)}
	b.set("0", "fail")
	err = l.Verify(ctx, next, next.Split(2))
	if !errors.Is(err, kubeworker.ErrJobFailed) || !strings.Contains(err.Error(), "last pod") {
		t.Fatalf("failing Verify as uptime-coordinator: %v, want ErrJobFailed with the last pod's status", err)
	}
	// ... and the retry deletes the failed Job and creates it again.
	b.set("0", "ok")
	if err := l.Verify(ctx, next, next.Split(2)); err != nil {
		t.Fatalf("retried Verify as uptime-coordinator: %v", err)
	}
	if ev.started.Load() != 5 || ev.retried.Load() != 1 || ev.failed.Load() != 1 {
		t.Errorf("events %v, want started=5 failed=1 retried=1", ev)
	}

	for _, ok := range []struct{ verb, resource, sub, group string }{
		{"create", "jobs", "", "batch"}, {"list", "jobs", "", "batch"},
		{"watch", "jobs", "", "batch"}, {"delete", "jobs", "", "batch"},
		{"list", "pods", "", ""}, {"watch", "pods", "", ""},
	} {
		if !can(ok.verb, ok.resource, ok.sub, ok.group) {
			t.Errorf("the coordinator may not %s %s/%s", ok.verb, ok.resource, ok.sub)
		}
	}
	for _, no := range []struct{ verb, resource, sub, group string }{
		{"list", "secrets", "", ""}, {"get", "secrets", "", ""}, {"update", "jobs", "", "batch"}, {"patch", "jobs", "", "batch"},
		{"update", "jobs", "status", "batch"}, {"create", "pods", "", ""}, {"delete", "pods", "", ""}, {"create", "pods", "exec", ""},
		{"list", "configmaps", "", ""}, {"create", "rolebindings", "", "rbac.authorization.k8s.io"},
		// Trimmed to what the launcher uses (pods are watched for stuck pods).
		{"get", "jobs", "", "batch"}, {"get", "pods", "", ""}, {"get", "pods", "log", ""},
	} {
		if can(no.verb, no.resource, no.sub, no.group) {
			t.Errorf("the coordinator may %s %s/%s", no.verb, no.resource, no.sub)
		}
	}
	if _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !isForbidden(err) {
		t.Errorf("listing secrets as uptime-coordinator: %v, want Forbidden", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, cfg.Kubernetes.SecretName, metav1.GetOptions{}); err != nil {
		t.Errorf("reading the workers' secret (the start-up check) as uptime-coordinator: %v", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, "another-secret", metav1.GetOptions{}); !isForbidden(err) {
		t.Errorf("reading another secret as uptime-coordinator: %v, want Forbidden", err)
	}
	if _, err := cs.BatchV1().Jobs(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{}); !isForbidden(err) {
		t.Errorf("listing jobs in another namespace: %v, want Forbidden", err)
	}
	if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); !isForbidden(err) {
		t.Errorf("deleting pods as uptime-coordinator: %v, want Forbidden", err)
	}

	// Nothing else: the namespace's resource rules are the Role's, besides
	// what every authenticated user may do (self reviews).
	rr, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []rbacv1.PolicyRule
	for _, r := range rr.Status.ResourceRules {
		if slices.ContainsFunc(r.APIGroups, func(g string) bool {
			return g == "authorization.k8s.io" || g == "authentication.k8s.io"
		}) {
			continue
		}
		got = append(got, rbacv1.PolicyRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames})
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(role.Rules)
	if string(g) != string(w) {
		t.Errorf("uptime-coordinator's rules in its namespace:\n got %s\nwant %s", g, w)
	}
}

// testClient: kubeconfig outside a cluster, the namespace from
// POD_NAMESPACE or the service-account file.
func testClient(t *testing.T, c *kubetest.Cluster) {
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		t.Skip("running inside a cluster: the in-cluster configuration would win")
	}
	dir := t.TempDir()
	nsFile := filepath.Join(dir, "namespace")

	cs, ns, err := kubeworker.ClientWith(config.Kubernetes{Kubeconfig: c.KubeconfigPath(), Namespace: "from-env"}, nsFile)
	if err != nil || ns != "from-env" {
		t.Fatalf("Client: %v, namespace %q", err, ns)
	}
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("the client does not reach the cluster: %v", err)
	}

	if err := os.WriteFile(nsFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ns, err := kubeworker.ClientWith(config.Kubernetes{Kubeconfig: c.KubeconfigPath()}, nsFile); err != nil || ns != "from-file" {
		t.Errorf("namespace from the file: %q, %v", ns, err)
	}
	if _, _, err := kubeworker.ClientWith(config.Kubernetes{Kubeconfig: c.KubeconfigPath()}, filepath.Join(dir, "absent")); err == nil ||
		!strings.Contains(err.Error(), "POD_NAMESPACE") {
		t.Errorf("no namespace: err = %v, want one naming POD_NAMESPACE", err)
	}
	if _, _, err := kubeworker.ClientWith(config.Kubernetes{Kubeconfig: filepath.Join(dir, "no-kubeconfig"), Namespace: "x"}, nsFile); err == nil {
		t.Error("no kubeconfig: no error")
	}
}
