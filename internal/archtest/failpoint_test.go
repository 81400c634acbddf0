package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A production build of the Redis store has no fault injection: its crash points are
// compiled in only with the necro_failpoint tag, which the tests and the chaos harness
// use. A file that reads NECRO_REDIS_FAILPOINT outside that tag fails this test.
func TestNoFailpointInProductionBuilds(t *testing.T) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	files := func(tags ...string) []string {
		t.Helper()
		args := append([]string{"list"}, tags...)
		cmd := exec.Command("go", append(args, "-f", `{{join .GoFiles "\n"}}`, "./backend/redis")...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %v: %v", tags, err)
		}
		return strings.Fields(string(out))
	}
	prod := files()
	if !slices.Contains(prod, "failpoint_off.go") || slices.Contains(prod, "failpoint.go") {
		t.Errorf("a build without tags compiles %v; want failpoint_off.go and not failpoint.go", prod)
	}
	for _, f := range prod {
		src, err := os.ReadFile(filepath.Join(root, "backend/redis", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(src), "NECRO_REDIS_FAILPOINT") {
			t.Errorf("%s reads NECRO_REDIS_FAILPOINT in a production build", f)
		}
	}
	tagged := files("-tags", "necro_failpoint")
	if !slices.Contains(tagged, "failpoint.go") || slices.Contains(tagged, "failpoint_off.go") {
		t.Errorf("a build with -tags necro_failpoint compiles %v; want failpoint.go and not failpoint_off.go", tagged)
	}
}
