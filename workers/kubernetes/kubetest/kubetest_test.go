package kubetest_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/delegation-program/uptime-coordinator/workers/kubernetes/kubetest"
)

const (
	secretName  = "worker-secret"
	secretKey   = "api-key"
	secretValue = "not-a-real-key-0123"
)

// TestHarness starts a real control plane, runs Jobs through the real job
// controller with the fake kubelet, and checks that RBAC is enforced.
func TestHarness(t *testing.T) {
	c := kubetest.Start(t)
	cs := c.Clientset()
	const ns = "harness"
	c.CreateNamespace(t, ns)

	ctx := t.Context()
	_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName},
		Data:       map[string][]byte{secretKey: []byte(secretValue)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create secret: %v", err)
	}

	var (
		mu        sync.Mutex
		runs      = map[string]int{}     // job name -> run calls
		cancelled = make(chan string, 1) // pods whose run saw its context cancelled
	)
	kubelet := kubetest.StartKubelet(t, cs, ns, func(ctx context.Context, pod *corev1.Pod) error {
		mu.Lock()
		runs[pod.Labels[batchv1.JobNameLabel]]++
		mu.Unlock()
		env, err := kubetest.EnvOf(ctx, cs, pod)
		if err != nil {
			return err
		}
		if env["WORKER_SECRET"] != secretValue {
			return errors.New("WORKER_SECRET does not hold the secret's value")
		}
		if env["POD_NAME"] != pod.Name {
			return fmt.Errorf("POD_NAME = %q, want %q", env["POD_NAME"], pod.Name)
		}
		switch env["MODE"] {
		case "fail":
			return errors.New("verifier failed on purpose")
		case "block":
			<-ctx.Done()
			cancelled <- pod.Name
			return ctx.Err()
		}
		return nil
	})

	t.Cleanup(func() {
		var b strings.Builder
		mem := c.PeakMemory()
		var total int64
		for _, name := range sortedKeys(mem) {
			fmt.Fprintf(&b, " %s=%dMiB", name, mem[name]>>20)
			total += mem[name]
		}
		t.Logf("peak RSS:%s total=%dMiB; startup: %v", b.String(), total>>20, c.StartupTimes())
	})

	t.Run("JobSucceeds", func(t *testing.T) {
		t.Parallel()
		job := runJob(t, cs, ns, newJob("succeeds", 0, "succeed"), batchv1.JobComplete)
		if job.Status.Succeeded != 1 || job.Status.Failed != 0 {
			t.Errorf("succeeded=%d failed=%d, want 1 and 0", job.Status.Succeeded, job.Status.Failed)
		}
		pods := jobPods(t, cs, ns, job.Name)
		if len(pods) != 1 {
			t.Fatalf("got %d pods, want 1", len(pods))
		}
		pod := pods[0]
		if pod.Status.Phase != corev1.PodSucceeded {
			t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
		}
		if pod.Spec.NodeName != kubelet.NodeName() {
			t.Errorf("pod bound to %q, want %q", pod.Spec.NodeName, kubelet.NodeName())
		}
		if term := pod.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 0 {
			t.Errorf("container state %+v, want terminated with exit code 0", pod.Status.ContainerStatuses[0].State)
		}
	})

	t.Run("JobFails", func(t *testing.T) {
		t.Parallel()
		job := runJob(t, cs, ns, newJob("fails", 0, "fail"), batchv1.JobFailed)
		if job.Status.Failed != 1 || job.Status.Succeeded != 0 {
			t.Errorf("succeeded=%d failed=%d, want 0 and 1", job.Status.Succeeded, job.Status.Failed)
		}
		pods := jobPods(t, cs, ns, job.Name)
		if len(pods) != 1 {
			t.Fatalf("got %d pods, want 1", len(pods))
		}
		term := pods[0].Status.ContainerStatuses[0].State.Terminated
		if term == nil || term.ExitCode != 1 || !strings.Contains(term.Message, "failed on purpose") {
			t.Errorf("container state %+v, want exit code 1 with the run error as message", pods[0].Status.ContainerStatuses[0].State)
		}
	})

	t.Run("JobRetriesThenFails", func(t *testing.T) {
		t.Parallel()
		// The job controller waits 10s, then 20s, before recreating a failed
		// pod, so this takes about 30s.
		job := runJob(t, cs, ns, newJob("retries", 2, "fail"), batchv1.JobFailed)
		if job.Status.Failed != 3 {
			t.Errorf("failed=%d, want 3", job.Status.Failed)
		}
		pods := jobPods(t, cs, ns, job.Name)
		if len(pods) != 3 {
			t.Fatalf("got %d pods, want 3", len(pods))
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodFailed {
				t.Errorf("pod %s phase %s, want Failed", p.Name, p.Status.Phase)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if runs[job.Name] != 3 {
			t.Errorf("run called %d times, want 3", runs[job.Name])
		}
	})

	t.Run("DeadlineDeletesRunningPod", func(t *testing.T) {
		t.Parallel()
		job := newJob("deadline", 0, "block")
		deadline := int64(2)
		job.Spec.ActiveDeadlineSeconds = &deadline
		job = runJob(t, cs, ns, job, batchv1.JobFailed)
		if reason := jobCondition(job, batchv1.JobFailed).Reason; reason != batchv1.JobReasonDeadlineExceeded {
			t.Errorf("Failed reason %q, want %q", reason, batchv1.JobReasonDeadlineExceeded)
		}
		select {
		case name := <-cancelled:
			t.Logf("run of pod %s was cancelled when the job controller deleted it", name)
		case <-time.After(10 * time.Second):
			t.Fatal("the run function's context was not cancelled after the pod was deleted")
		}
		// The fake kubelet finishes the graceful deletion and the job
		// controller drops its tracking finalizer, so the pod goes away.
		err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true,
			func(context.Context) (bool, error) { return len(jobPods(t, cs, ns, job.Name)) == 0, nil })
		if err != nil {
			t.Errorf("pods of job %s still exist: %+v", job.Name, jobPods(t, cs, ns, job.Name))
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		_, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "job-launcher"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create role: %v", err)
		}
		_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "job-launcher"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "job-launcher"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "coordinator", Namespace: ns}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create role binding: %v", err)
		}

		token := c.TokenFor(t, ns, "coordinator")
		if token == "" {
			t.Fatal("TokenFor returned an empty token")
		}
		limited, err := kubernetes.NewForConfig(c.ConfigForToken(token))
		if err != nil {
			t.Fatalf("clientset for token: %v", err)
		}

		_, err = limited.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("listing secrets with the role-bound token: err = %v, want 403 Forbidden", err)
		}
		_, err = limited.BatchV1().Jobs(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("listing jobs in another namespace: err = %v, want 403 Forbidden", err)
		}
		// Role bindings take effect through the authorizer's informer, which
		// can lag the binding's creation by a moment.
		job := runJob(t, limited, ns, newJob("by-token", 0, "succeed"), batchv1.JobComplete)
		if job.Status.Succeeded != 1 {
			t.Errorf("succeeded=%d, want 1", job.Status.Succeeded)
		}
	})

	t.Run("EnvOf", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "worker-config"},
			Data:       map[string]string{"NETWORK": "mainnet", "batch": "7"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create configmap: %v", err)
		}
		optional := true
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, Labels: map[string]string{"app": "verifier"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name:    "main",
				EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "worker-config"}}}},
				Env: []corev1.EnvVar{
					{Name: "KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: secretKey}}},
					{Name: "BATCH", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "worker-config"}, Key: "batch"}}},
					{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
					{Name: "MISSING", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: &optional}}},
					{Name: "URL", Value: "https://$(CFG_NETWORK).example/$(BATCH)/$(UNSET)/$$(BATCH)"},
				},
			}}},
		}
		env, err := kubetest.EnvOf(ctx, cs, pod)
		if err != nil {
			t.Fatalf("EnvOf: %v", err)
		}
		want := map[string]string{
			"CFG_NETWORK": "mainnet",
			"CFG_batch":   "7",
			"KEY":         secretValue,
			"BATCH":       "7",
			"APP":         "verifier",
			"URL":         "https://mainnet.example/7/$(UNSET)/$(BATCH)",
		}
		if len(env) != len(want) {
			t.Errorf("EnvOf returned %d variables (%v), want %d", len(env), sortedKeys(env), len(want))
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("env[%s] = %q, want %q", k, env[k], v)
			}
		}

		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{
			Name:      "REQUIRED",
			ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k"}},
		})
		if _, err := kubetest.EnvOf(ctx, cs, pod); !apierrors.IsNotFound(err) {
			t.Errorf("EnvOf with a missing required secret: err = %v, want NotFound", err)
		}
	})
}

func newJob(name string, backoffLimit int32, mode string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoffLimit,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name:  "verifier",
					Image: "registry.invalid/verifier:test",
					Env: []corev1.EnvVar{
						{Name: "MODE", Value: mode},
						{Name: "WORKER_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: secretKey,
						}}},
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					},
				}},
			}},
		},
	}
}

// runJob creates job (retrying while RBAC for a fresh binding is not yet in
// effect) and waits until it has the condition want.
func runJob(t *testing.T, cs kubernetes.Interface, ns string, job *batchv1.Job, want batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) && time.Since(begin) < 5*time.Second {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("create job %s: %v", job.Name, err)
	}
	var got *batchv1.Job
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err = cs.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				continue
			}
			if cond.Type == want {
				return true, nil
			}
			if cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed {
				return false, fmt.Errorf("job %s finished with %s (%s), want %s", job.Name, cond.Type, cond.Message, want)
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("wait for job %s to be %s: %v (status %+v)", job.Name, want, err, got.Status)
	}
	t.Logf("job %s reached %s in %s", job.Name, want, time.Since(begin).Round(time.Millisecond))
	return got
}

func jobCondition(job *batchv1.Job, typ batchv1.JobConditionType) batchv1.JobCondition {
	for _, c := range job.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return batchv1.JobCondition{}
}

func jobPods(t *testing.T, cs kubernetes.Interface, ns, jobName string) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{
		LabelSelector: batchv1.JobNameLabel + "=" + jobName,
	})
	if err != nil {
		t.Fatalf("list pods of job %s: %v", jobName, err)
	}
	return pods.Items
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// TestStartWithoutBinaries checks that a missing build is reported as a
// failure that names tools/kube/build.sh, not as a skip.
func TestStartWithoutBinaries(t *testing.T) {
	t.Setenv(kubetest.ToolsDirEnv, t.TempDir())
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		kubetest.Start(ft)
	}()
	<-done
	if !ft.fatal || !strings.Contains(ft.msg, "tools/kube/build.sh") {
		t.Errorf("Start without binaries: fatal=%v message=%q, want a fatal error naming tools/kube/build.sh", ft.fatal, ft.msg)
	}
}

// fatalRecorder records Fatalf instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	fatal bool
	msg   string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Helper() {}
