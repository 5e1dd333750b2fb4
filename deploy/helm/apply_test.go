package helm_test

import (
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/delegation-program/uptime-coordinator/deploy/helm/helmtest"
	"github.com/delegation-program/uptime-coordinator/workers/kubernetes/kubetest"
)

// TestApplyToAPIServer creates every object the chart renders (from the
// production values, with the serve Deployment, the alert values and a
// read-only user too) on
// a real kube-apiserver with strict server-side field validation, then asks
// the API server, by SubjectAccessReview, whether the coordinator's
// ServiceAccount may do each thing the launcher does, and nothing more.
func TestApplyToAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	ctx := t.Context()
	c.CreateNamespace(t, release.Namespace)

	v := alertValues(t) // the serve Deployment, the alert settings and the subscriptions file too
	pg := v["coordinator"].(map[string]any)["postgres"].(map[string]any)
	pg["roUser"], pg["roPassword"] = "leaderboard", "ro-Secret-5"
	docs := helmtest.MustRender(t, release, v)

	dc, err := discovery.NewDiscoveryClientForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dyn, err := dynamic.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, obj := range helmtest.Unstructured(t, docs) {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		_, err = dyn.Resource(m.Resource).Namespace(release.Namespace).Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"})
		if err != nil {
			t.Errorf("the API server refuses %s %s: %v", gvk.Kind, obj.GetName(), err)
		}
		kinds[gvk.Kind]++
	}
	t.Logf("created %v", kinds)
	for kind, n := range map[string]int{"Deployment": 2, "Service": 2, "Secret": 1, "ConfigMap": 1, "Role": 1, "RoleBinding": 1, "ServiceAccount": 2} {
		if kinds[kind] != n {
			t.Errorf("%d %s objects, want %d", kinds[kind], kind, n)
		}
	}

	user := "system:serviceaccount:" + release.Namespace + ":delegation-verify-coordinator"
	groupsOf := []string{"system:serviceaccounts", "system:serviceaccounts:" + release.Namespace, "system:authenticated"}
	may := func(verb, group, resource, name string) bool {
		r, err := c.Clientset().AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groupsOf, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: release.Namespace, Verb: verb, Group: group, Resource: resource, Name: name,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	// Every call the launcher makes (workers/kubernetes): Jobs created,
	// listed and watched (informer), deleted (failed, stuck or timed out);
	// Pods listed and watched (stuck pods, the last failure); the worker
	// Secret read at start-up.
	for _, a := range [][4]string{
		{"create", "batch", "jobs", ""}, {"list", "batch", "jobs", ""}, {"watch", "batch", "jobs", ""},
		{"delete", "batch", "jobs", "delegation-verify-24-06-01-12-34-0"},
		{"list", "", "pods", ""}, {"watch", "", "pods", ""},
		{"get", "", "secrets", "delegation-verify-coordinator"},
		{"get", "", "serviceaccounts", "delegation-verify"}, {"get", "", "configmaps", "delegation-verify-coordinator-worker"},
	} {
		if !may(a[0], a[1], a[2], a[3]) {
			t.Errorf("the coordinator may not %s %s %s", a[0], a[2], a[3])
		}
	}
	for _, a := range [][4]string{
		{"get", "", "secrets", "another"}, {"list", "", "secrets", ""}, {"watch", "", "secrets", ""},
		{"update", "batch", "jobs", ""}, {"patch", "batch", "jobs", ""}, {"create", "", "pods", ""}, {"delete", "", "pods", ""},
		{"create", "", "pods/exec", ""}, {"get", "", "configmaps", "other"}, {"list", "", "configmaps", ""},
		{"get", "", "serviceaccounts", "delegation-verify-coordinator"}, {"create", "rbac.authorization.k8s.io", "roles", ""},
	} {
		if may(a[0], a[1], a[2], a[3]) {
			t.Errorf("the coordinator may %s %s %s", a[0], a[2], a[3])
		}
	}
	// The workers' account has no API rights at all.
	user = "system:serviceaccount:" + release.Namespace + ":delegation-verify"
	if may("list", "batch", "jobs", "") || may("get", "", "secrets", "delegation-verify-coordinator") {
		t.Error("the workers' ServiceAccount has API rights")
	}
}
