package main

import (
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// testHelpers are this module's packages that exist only for tests,
// benchmarks and the demo. Besides these, every package whose name ends in
// "test" (pgtest, kubetest, apitest...) is one.
var testHelpers = []string{"internal/synthnet"}

// TestBinaryLinksNoTestHelper: the production binary (default build tags)
// depends on no test-helper package of this module, nor on the standard
// library's testing package.
func TestBinaryLinksNoTestHelper(t *testing.T) {
	t.Parallel()
	goList := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
		}
		return strings.Fields(string(out))
	}
	module := goList("-m")[0]
	var helpers []string
	for _, pkg := range goList(module + "/...") {
		rel := strings.TrimPrefix(pkg, module+"/")
		if strings.HasSuffix(path.Base(pkg), "test") || slices.Contains(testHelpers, rel) {
			helpers = append(helpers, pkg)
		}
	}
	// The rule must find the helpers it is meant to keep out.
	for _, want := range []string{"database/pgtest", "internal/synthnet", "internal/porttest", "workers/kubernetes/kubetest"} {
		if !slices.Contains(helpers, module+"/"+want) {
			t.Fatalf("test helpers %v lack %s", helpers, want)
		}
	}
	deps := goList("-deps", ".")
	if !slices.Contains(deps, module+"/database/postgres") {
		t.Fatalf("go list -deps . does not list database/postgres: %v", deps)
	}
	for _, pkg := range append(helpers, "testing") {
		if slices.Contains(deps, pkg) {
			t.Errorf("the coordinator binary depends on %s (go list -deps ./cmd/coordinator)", pkg)
		}
	}
}
