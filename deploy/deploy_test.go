// Package deploy holds the Kubernetes manifests (a kustomize base); this test
// renders them as `kubectl kustomize deploy/` does and checks what operators
// rely on.
package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/delegation-program/uptime-coordinator/config"
)

func render(t *testing.T) []runtime.Object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatalf("kustomize build deploy/: %v", err)
	}
	decoder := serializer.NewCodecFactory(clientgoscheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for _, r := range resMap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("%s/%s does not decode strictly: %v", r.GetKind(), r.GetName(), err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestKustomizeRenders(t *testing.T) {
	var dep *appsv1.Deployment
	var job *batchv1.Job
	var cm *corev1.ConfigMap
	var roles []*rbacv1.Role
	accounts := map[string]bool{}
	for _, o := range render(t) {
		switch v := o.(type) {
		case *appsv1.Deployment:
			dep = v
		case *batchv1.Job:
			job = v
		case *corev1.ConfigMap:
			if v.Name == "uptime-coordinator-env" {
				cm = v
			}
		case *rbacv1.Role:
			roles = append(roles, v)
		case *corev1.ServiceAccount:
			accounts[v.Name] = true
		case *corev1.Secret:
			t.Errorf("the base must not ship a Secret (it would overwrite the real one): %s", v.Name)
		}
	}
	if dep == nil || job == nil || cm == nil || len(roles) == 0 {
		t.Fatalf("missing objects: deployment %v, job %v, configmap %v, roles %d", dep != nil, job != nil, cm != nil, len(roles))
	}
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("deployment: %d replicas, strategy %s; want 1 and Recreate", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("deployment: probes must use /healthz and /readyz")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("deployment: read-only root filesystem and no privilege escalation required")
	}
	if ps := dep.Spec.Template.Spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Error("deployment: must run as non-root")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("deployment: resources must be set")
	}
	if !accounts[dep.Spec.Template.Spec.ServiceAccountName] || !accounts["delegation-verify"] {
		t.Errorf("service accounts %v: need the coordinator's and delegation-verify", accounts)
	}
	// The ConfigMap names only registered, non-secret variables.
	for name := range cm.Data {
		known := false
		for _, v := range config.Vars {
			if v.Name == name {
				known = true
				if v.Secret {
					t.Errorf("configmap carries the secret %s", name)
				}
			}
		}
		if !known {
			t.Errorf("configmap sets %s, which the coordinator does not read", name)
		}
	}
	// The configuration in the ConfigMap is valid on its own (secrets aside).
	env := map[string]string{"POSTGRES_PASSWORD": "x"}
	for k, v := range cm.Data {
		env[k] = v
	}
	if _, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Errorf("the example configuration does not validate: %v", err)
	}
	// The database init job runs create-database, then init-database.
	var steps []string
	for _, ic := range append(slices.Clone(job.Spec.Template.Spec.InitContainers), job.Spec.Template.Spec.Containers...) {
		steps = append(steps, strings.Join(ic.Args, " "))
	}
	if len(steps) != 2 || !strings.Contains(steps[0], "create-database") || !strings.Contains(steps[1], "init-database") {
		t.Errorf("database init job steps %v", steps)
	}
}

func TestExampleSecretHasOnlyPlaceholders(t *testing.T) {
	b, err := os.ReadFile("base/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, data, ok := strings.Cut(string(b), "\nstringData:\n")
	if !ok {
		t.Fatal("secret.example.yaml has no stringData")
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		n++
		if _, v, _ := strings.Cut(line, ": "); !strings.HasPrefix(v, `"<`) || !strings.HasSuffix(v, `>"`) {
			t.Errorf("not a placeholder: %q", line)
		}
	}
	if n == 0 {
		t.Error("no keys in the example Secret")
	}
}
