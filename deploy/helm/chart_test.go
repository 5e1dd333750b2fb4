// Tests of the Helm chart uptime-coordinator: rendered with Helm's own
// template engine from the production chart's values and from ours, strictly
// decoded, loaded by the coordinator's own configuration loader, and applied
// to a real kube-apiserver with its RBAC checked by SubjectAccessReviews.
package helm_test

import (
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/deploy/helm/helmtest"
)

var release = helmtest.Release{Name: "delegation-verify-coordinator", Namespace: "delegation"}

// productionValues is the production chart's values.yaml with only the
// blanks this chart requires filled in.
func productionValues(t *testing.T) map[string]any {
	t.Helper()
	v := readYAML(t, "testdata/production-values.yaml")
	c := v["coordinator"].(map[string]any)
	pg := c["postgres"].(map[string]any)
	pg["db"], pg["user"], pg["password"] = "delegation", "coordinator", "pg-Secret-1"
	w := c["worker"].(map[string]any)
	w["image"], w["tag"] = "delegation-verify", "1.0.0"
	return v
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestValuesKeepProductionKeys: every key of the production chart's values
// is in ours, with the same default.
func TestValuesKeepProductionKeys(t *testing.T) {
	prod := readYAML(t, "testdata/production-values.yaml")
	ours := readYAML(t, "uptime-coordinator/values.yaml")
	var walk func(path string, p, o map[string]any)
	walk = func(path string, p, o map[string]any) {
		for k, pv := range p {
			ov, ok := o[k]
			if !ok {
				t.Errorf("values.yaml lacks the production key %s%s", path, k)
				continue
			}
			if pm, isMap := pv.(map[string]any); isMap {
				om, _ := ov.(map[string]any)
				walk(path+k+".", pm, om)
				continue
			}
			if !reflect.DeepEqual(pv, ov) {
				t.Errorf("%s%s: default %#v, production %#v", path, k, ov, pv)
			}
		}
	}
	walk("", prod, ours)
}

type rendered struct {
	objs    []kruntime.Object
	dep     *appsv1.Deployment
	secrets map[string]*corev1.Secret
}

func render(t *testing.T, values map[string]any) rendered {
	t.Helper()
	r := rendered{objs: helmtest.Decode(t, helmtest.MustRender(t, release, values)), secrets: map[string]*corev1.Secret{}}
	for _, d := range helmtest.Find[*appsv1.Deployment](r.objs) {
		if d.Name == "delegation-verify-coordinator" {
			r.dep = d
		}
	}
	if r.dep == nil {
		t.Fatal("no Deployment delegation-verify-coordinator")
	}
	for _, s := range helmtest.Find[*corev1.Secret](r.objs) {
		r.secrets[s.Name] = s
	}
	return r
}

// env resolves a container's environment as the kubelet would, from the
// rendered Secrets (missing optional keys left out).
func (r rendered) env(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := r.secrets[ref.Name]
			if s == nil && ref.Name != "delegation-verify-coordinator" {
				continue // the operator's own Secret
			}
			if s == nil || s.Data[ref.Key] == nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				t.Fatalf("%s: %s reads key %s of Secret %s, which the chart does not provide", c.Name, e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = string(s.Data[ref.Key])
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = release.Namespace
		default:
			t.Fatalf("%s: %s has an unexpected source %+v", c.Name, e.Name, e.ValueFrom)
		}
	}
	return env
}

func (r rendered) load(t *testing.T, c corev1.Container) *config.Config {
	t.Helper()
	env := r.env(t, c)
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("the coordinator refuses the chart's environment: %v", err)
	}
	return cfg
}

func containerNamed(cs []corev1.Container, name string) corev1.Container {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return corev1.Container{}
}

// TestProductionValues renders the production chart's values (plus the
// required blanks) and checks what the drop-in relies on.
func TestProductionValues(t *testing.T) {
	r := render(t, productionValues(t))
	dep := r.dep
	if want := map[string]string{"app.kubernetes.io/name": "delegation-verify-coordinator", "app.kubernetes.io/instance": "delegation-verify-coordinator"}; !maps.Equal(dep.Spec.Selector.MatchLabels, want) {
		t.Errorf("selector %v, want the production chart's %v (a Deployment's selector cannot change on upgrade)", dep.Spec.Selector.MatchLabels, want)
	}
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %d strategy %s, want 1 and Recreate", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	pod := dep.Spec.Template.Spec

	// Init containers: the coordinator's own commands, no shell.
	var steps [][]string
	for _, c := range pod.InitContainers {
		steps = append(steps, c.Command)
	}
	if want := [][]string{{"coordinator", "create-database"}, {"coordinator", "init-database"}}; !reflect.DeepEqual(steps, want) {
		t.Errorf("init containers run %q, want %q", steps, want)
	}

	// The Google key: mounted where SPREADSHEET_CREDENTIALS_JSON points,
	// readable by the non-root user through fsGroup.
	sc := pod.SecurityContext
	if sc == nil || sc.FSGroup == nil || *sc.FSGroup != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v, want non-root 65532 with fsGroup 65532", sc)
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || *pod.Volumes[0].Secret.DefaultMode != 0o440 ||
		pod.Volumes[0].Secret.Items[0] != (corev1.KeyToPath{Key: "gcp-sa-json", Path: "gcp-sa.json"}) {
		t.Errorf("volumes %+v", pod.Volumes)
	}

	main := containerNamed(pod.Containers, "coordinator")
	for _, c := range append(slices.Clone(pod.InitContainers), main) {
		s := c.SecurityContext
		if s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem ||
			s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s securityContext %+v, want restricted", c.Name, s)
		}
		for _, e := range c.Env {
			if strings.Contains(e.Name, "PASSWORD") && e.ValueFrom == nil {
				t.Errorf("container %s: %s is a plain value", c.Name, e.Name)
			}
		}
	}
	if main.VolumeMounts[0].MountPath != "/usr/src/app/gcloud" {
		t.Errorf("mounts %+v", main.VolumeMounts)
	}

	// The coordinator accepts its environment, and gets the production
	// values with their meaning.
	cfg := r.load(t, main)
	got := map[string]any{
		"interval": cfg.Runtime.SurveyInterval.String(), "mini batches": cfg.Runtime.MiniBatches, "uptime days": cfg.Runtime.UptimeDays,
		"worker image": cfg.Workers.Image + ":" + cfg.Workers.Tag, "ttl": *cfg.Kubernetes.TTLSecondsAfterFinished, "mode": cfg.Workers.Mode,
		"cassandra": cfg.Cassandra.Host + ":" + "9142", "region": cfg.Workers.AWSRegion, "bucket": cfg.Workers.AWSS3Bucket,
		"auth path": cfg.Kubernetes.AuthVolumeMountPath, "sheet key": cfg.AppStatus.CredentialsJSON, "postgres": cfg.Postgres.Host + "/" + cfg.Postgres.DB,
		"password": cfg.Postgres.Password, "migrate": cfg.Postgres.MigrateOnStart, "secret": cfg.Kubernetes.SecretName,
		"entrypoint": cfg.Kubernetes.EntrypointConfigMap, "namespace": cfg.Kubernetes.Namespace, "metrics": cfg.HTTP.MetricsAddr, "stuck": cfg.Kubernetes.StuckTimeout.String(),
		"storage": cfg.Runtime.SubmissionStorage, "worker account": cfg.Kubernetes.ServiceAccount,
	}
	want := map[string]any{
		"interval": "20m0s", "mini batches": 2, "uptime days": 90,
		"worker image": "delegation-verify:1.0.0", "ttl": int32(43200), "mode": "kubernetes",
		"cassandra": "cassandra.us-west-2.amazonaws.com:9142", "region": "us-west-2", "bucket": "673156464838-uptime-service-backend",
		"auth path": "/var/mina-delegation-verify-auth", "sheet key": "/usr/src/app/gcloud/gcp-sa.json", "postgres": "delegation-verify-coordinator-psql/delegation",
		"password": "pg-Secret-1", "migrate": false, "secret": "delegation-verify-coordinator",
		"entrypoint": "delegation-verify-coordinator-worker", "namespace": "delegation", "metrics": ":8080", "stuck": "5m0s",
		"storage": "POSTGRES", "worker account": "delegation-verify",
	}
	for k := range want {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("%s: %#v, want %#v", k, got[k], want[k])
		}
	}
	for _, c := range pod.InitContainers {
		env := r.env(t, c)
		if _, err := config.LoadPostgres(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Errorf("init container %s: %v", c.Name, err)
		}
	}

	// The worker Secret holds what the Jobs will reference, and the
	// entrypoint ConfigMap and the workers' ServiceAccount exist.
	if s := r.secrets["delegation-verify-coordinator"]; s == nil || string(s.Data["POSTGRES_PASSWORD"]) != "pg-Secret-1" {
		t.Errorf("worker Secret %+v", s)
	}
	var cms, sas []string
	for _, cm := range helmtest.Find[*corev1.ConfigMap](r.objs) {
		cms = append(cms, cm.Name)
		if !strings.Contains(cm.Data["entrypoint-worker.sh"], `"$START_TIMESTAMP" "$END_TIMESTAMP"`) {
			t.Errorf("worker entrypoint:\n%s", cm.Data["entrypoint-worker.sh"])
		}
	}
	for _, sa := range helmtest.Find[*corev1.ServiceAccount](r.objs) {
		sas = append(sas, sa.Name)
	}
	slices.Sort(sas)
	if !slices.Equal(cms, []string{"delegation-verify-coordinator-worker"}) || !slices.Equal(sas, []string{"delegation-verify", "delegation-verify-coordinator"}) {
		t.Errorf("ConfigMaps %v, ServiceAccounts %v", cms, sas)
	}

	// The Role: exactly what the launcher uses.
	roles := helmtest.Find[*rbacv1.Role](r.objs)
	if len(roles) != 1 {
		t.Fatalf("roles %d", len(roles))
	}
	gotRules, _ := json.Marshal(roles[0].Rules)
	const wantRules = `[{"verbs":["create","delete","list","watch"],"apiGroups":["batch"],"resources":["jobs"]},` +
		`{"verbs":["list","watch"],"apiGroups":[""],"resources":["pods"]},` +
		`{"verbs":["get"],"apiGroups":[""],"resources":["serviceaccounts"],"resourceNames":["delegation-verify"]},` +
		`{"verbs":["get"],"apiGroups":[""],"resources":["configmaps"],"resourceNames":["delegation-verify-coordinator-worker"]},` +
		`{"verbs":["get"],"apiGroups":[""],"resources":["secrets"],"resourceNames":["delegation-verify-coordinator"]}]`
	if string(gotRules) != wantRules {
		t.Errorf("role rules\n got %s\nwant %s", gotRules, wantRules)
	}

	// Metrics: the Service targets the metrics port; no ServiceMonitor
	// and no serve Deployment by default.
	for _, o := range r.objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			t.Errorf("unexpected %s by default", u.GetKind())
		}
	}
	svcs := helmtest.Find[*corev1.Service](r.objs)
	if len(svcs) != 1 || svcs[0].Spec.Ports[0].Port != 80 || svcs[0].Spec.Ports[0].TargetPort.StrVal != "http" || main.Ports[0].ContainerPort != 8080 {
		t.Errorf("services %+v, container ports %+v", svcs, main.Ports)
	}
	if len(helmtest.Find[*appsv1.Deployment](r.objs)) != 1 {
		t.Error("a second Deployment by default")
	}
}

// TestRequiredBlanks: a production values file without the database or
// worker image fails to render, naming the value.
func TestRequiredBlanks(t *testing.T) {
	for _, tc := range []struct {
		path []string
		want string
	}{
		{[]string{"coordinator", "postgres", "db"}, "coordinator.postgres.db is required"},
		{[]string{"coordinator", "postgres", "user"}, "coordinator.postgres.user is required"},
		{[]string{"coordinator", "worker", "image"}, "coordinator.worker.image is required"},
		{[]string{"coordinator", "worker", "tag"}, "coordinator.worker.tag is required"},
	} {
		v := productionValues(t)
		m := v
		for _, k := range tc.path[:len(tc.path)-1] {
			m = m[k].(map[string]any)
		}
		m[tc.path[len(tc.path)-1]] = ""
		if _, err := helmtest.Render(release, v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without %s: %v, want %q", strings.Join(tc.path, "."), err, tc.want)
		}
	}
	v := productionValues(t)
	v["replicas"] = 2
	if _, err := helmtest.Render(release, v); err == nil || !strings.Contains(err.Error(), "replicas must be 1") {
		t.Errorf("replicas 2: %v", err)
	}
}

// TestSecretsFromEnvVars: a production values file that passes secrets in
// coordinator.envVars as plain values (as the Python chart had to) gets them
// moved into the Secret; the coordinator and the Jobs read them from there.
func TestSecretsFromEnvVars(t *testing.T) {
	v := productionValues(t)
	c := v["coordinator"].(map[string]any)
	c["envVars"] = []any{
		map[string]any{"name": "SUBMISSION_STORAGE", "value": "CASSANDRA"},
		map[string]any{"name": "AWS_KEYSPACE", "value": "bpu_integration_dev"},
		map[string]any{"name": "CASSANDRA_USERNAME", "value": "svc"},
		map[string]any{"name": "CASSANDRA_PASSWORD", "value": "cass-Secret-2"},
		map[string]any{"name": "SPREADSHEET_NAME", "value": "Registrations"},
		map[string]any{"name": "WEBHOOK_URL", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "slack", "key": "url"}}},
	}
	aws := c["aws"].(map[string]any)
	aws["accessKeyID"], aws["secretAccessKey"] = "AKIA-Secret-3", "aws-Secret-4"
	v["secret"] = map[string]any{"gcpServiceAccount": `{"type":"service_account"}`}
	r := render(t, v)
	main := containerNamed(r.dep.Spec.Template.Spec.Containers, "coordinator")
	var webhook *corev1.EnvVar
	for i, e := range main.Env {
		for _, s := range []string{"cass-Secret-2", "AKIA-Secret-3", "aws-Secret-4", "pg-Secret-1"} {
			if e.Value == s {
				t.Errorf("%s is a plain value", e.Name)
			}
		}
		if e.Name == "WEBHOOK_URL" {
			webhook = &main.Env[i]
		}
	}
	if webhook == nil || webhook.ValueFrom.SecretKeyRef.Name != "slack" {
		t.Errorf("WEBHOOK_URL from the operator's own Secret: %+v", webhook)
	}
	s := r.secrets["delegation-verify-coordinator"]
	keys := slices.Sorted(maps.Keys(s.Data))
	if want := []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CASSANDRA_PASSWORD", "POSTGRES_PASSWORD", "gcp-sa-json"}; !slices.Equal(keys, want) {
		t.Errorf("Secret keys %v, want %v", keys, want)
	}
	env := r.env(t, main)
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.SubmissionStorage != "CASSANDRA" || cfg.Cassandra.Password != "cass-Secret-2" || cfg.Cassandra.AWSAccessKeyID != "AKIA-Secret-3" ||
		cfg.AppStatus.SpreadsheetName != "Registrations" {
		t.Errorf("config: storage %s, cassandra password set %v, key set %v, sheet %q", cfg.Runtime.SubmissionStorage,
			cfg.Cassandra.Password != "", cfg.Cassandra.AWSAccessKeyID != "", cfg.AppStatus.SpreadsheetName)
	}
}

// TestVariants: an existing Secret, compatibility mode, the serve
// Deployment and the ServiceMonitor.
func TestVariants(t *testing.T) {
	v := productionValues(t)
	v["workerSecret"] = map[string]any{"existingSecret": "ops-managed"}
	r := render(t, v)
	if len(r.secrets) != 0 {
		t.Errorf("an existing Secret named, yet the chart creates %v", slices.Collect(maps.Keys(r.secrets)))
	}
	main := containerNamed(r.dep.Spec.Template.Spec.Containers, "coordinator")
	for _, e := range main.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && (e.ValueFrom.SecretKeyRef.Name != "ops-managed" || !*e.ValueFrom.SecretKeyRef.Optional) {
			t.Errorf("%s reads %+v", e.Name, e.ValueFrom.SecretKeyRef)
		}
		if e.Name == "WORKER_SECRET_NAME" && e.Value != "ops-managed" {
			t.Errorf("WORKER_SECRET_NAME %q", e.Value)
		}
	}
	if role := helmtest.Find[*rbacv1.Role](r.objs)[0]; !slices.Equal(role.Rules[4].ResourceNames, []string{"ops-managed"}) {
		t.Errorf("role %+v", role.Rules)
	}

	v = productionValues(t)
	v["workerSecret"] = map[string]any{"compatibilityMode": true}
	r = render(t, v)
	cfg := r.load(t, containerNamed(r.dep.Spec.Template.Spec.Containers, "coordinator"))
	if !cfg.Kubernetes.SecretsInline || cfg.Kubernetes.SecretName != "" {
		t.Errorf("compatibility mode: inline %v secret %q", cfg.Kubernetes.SecretsInline, cfg.Kubernetes.SecretName)
	}
	if rules := helmtest.Find[*rbacv1.Role](r.objs)[0].Rules; len(rules) != 4 {
		t.Errorf("compatibility mode: the Role still reads a Secret: %+v", rules)
	}

	v = productionValues(t)
	v["serve"] = map[string]any{"enabled": true}
	v["metrics"] = map[string]any{"serviceMonitor": map[string]any{"enabled": true}}
	v["coordinator"].(map[string]any)["postgres"].(map[string]any)["roUser"] = "leaderboard"
	v["coordinator"].(map[string]any)["postgres"].(map[string]any)["roPassword"] = "ro-Secret-5"
	r = render(t, v)
	var serve *appsv1.Deployment
	for _, d := range helmtest.Find[*appsv1.Deployment](r.objs) {
		if d.Name == "delegation-verify-coordinator-serve" {
			serve = d
		}
	}
	if serve == nil {
		t.Fatal("no serve Deployment")
	}
	sc := serve.Spec.Template.Spec.Containers[0]
	if !slices.Equal(sc.Command, []string{"coordinator", "serve"}) {
		t.Errorf("serve command %q", sc.Command)
	}
	env := r.env(t, sc)
	serveCfg, err := config.LoadServe(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("serve refuses its environment: %v", err)
	}
	if serveCfg.Addr != ":8081" || serveCfg.Postgres.ROUser != "leaderboard" || serveCfg.Postgres.ROPassword != "ro-Secret-5" {
		t.Errorf("serve: addr %q ro user %q", serveCfg.Addr, serveCfg.Postgres.ROUser)
	}
	if maps.Equal(serve.Spec.Selector.MatchLabels, r.dep.Spec.Selector.MatchLabels) {
		t.Error("the serve Deployment's selector matches the coordinator's pods")
	}
	var steps []string
	for _, c := range r.dep.Spec.Template.Spec.InitContainers {
		steps = append(steps, strings.Join(c.Command, " "))
	}
	if !slices.Equal(steps, []string{"coordinator create-database", "coordinator init-database", "coordinator create-ro-user"}) {
		t.Errorf("init steps with a read-only user: %q", steps)
	}
	var monitors []*unstructured.Unstructured
	for _, o := range r.objs {
		if u, ok := o.(*unstructured.Unstructured); ok && u.GetKind() == "ServiceMonitor" {
			monitors = append(monitors, u)
		}
	}
	if len(monitors) != 1 {
		t.Fatalf("ServiceMonitors %d", len(monitors))
	}
	eps, _, _ := unstructured.NestedSlice(monitors[0].Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "http" || eps[0].(map[string]any)["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %v", eps)
	}
}
