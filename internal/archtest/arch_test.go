package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/necrostack/necro"

// Third-party modules, each with a single home (docs/design.md, STYLE.md §1).
const (
	protoactor = "github.com/asynkron/protoactor-go/..."
	goRedis    = "github.com/redis/go-redis/v9/..."
	otel       = "go.opentelemetry.io/..."
	prometheus = "github.com/prometheus/..." // the Prometheus endpoint of telemetry's metrics
	lru        = "github.com/hashicorp/golang-lru/v2/..."
	rapid      = "pgregory.net/rapid/..."
)

// A rule says what the packages matching pkg may import besides the standard library.
// A pattern that starts with "." is relative to the module ("." is the root package,
// "./backend" the backend package); any other pattern is a full import path. A pattern
// ending in "/..." matches that path and every path below it, and a package may always
// import packages in the subtree its own rule covers.
type rule struct {
	pkg     string   // the packages the rule governs
	imports []string // direct, non-test imports allowed besides the standard library
	never   []string // packages that must not be among the transitive dependencies
}

// rules are the arrows of docs/design.md. A package of the module that no rule governs
// fails the test: give it a rule here and an arrow in the design, together.
var rules = []rule{
	{pkg: "."}, // the root makes its own UUIDs: the standard library only
	{
		pkg:     "./supervision/...",
		imports: []string{".", "./internal/...", lru},
		never:   []string{"./backend/...", protoactor, goRedis, otel},
	},
	{pkg: "./telemetry/...", imports: []string{".", otel, prometheus}},
	{pkg: "./backend", imports: []string{"."}},
	{
		pkg:     "./backend/backendtest/...",
		imports: []string{".", "./backend", "./internal/...", rapid},
		never:   []string{"./backend/memory/...", "./backend/redis/...", goRedis},
	},
	{
		// A program that wants only the in-memory queue compiles no Redis client.
		pkg:     "./backend/memory/...",
		imports: []string{".", "./backend"},
		never:   []string{goRedis, otel, protoactor},
	},
	{
		pkg:     "./backend/redis/...",
		imports: []string{".", "./backend", "./telemetry/...", "./internal/...", goRedis},
	},
	{
		pkg:     "./actors/...",
		imports: []string{".", "./supervision/...", "./telemetry/...", "./internal/...", protoactor},
		never:   []string{"./backend/...", goRedis},
	},
	{
		// The spine speaks to the backend contract; only the CLI meets a concrete store.
		// It runs its actor through the typed API of actors, never protoactor itself.
		pkg: "./spine/...",
		imports: []string{".", "./backend", "./actors/...", "./supervision/...", "./telemetry/...",
			"./internal/..."},
		never: []string{"./backend/memory/...", "./backend/redis/...", goRedis},
	},
	{
		pkg:     "./internal/...",
		imports: []string{".", "./backend/...", "./supervision/...", "./telemetry/...", goRedis, rapid},
	},
	{
		// The chaos harness's test app: organs on the public API, mounted by the CLI.
		pkg:     "./internal/chaosapp",
		imports: []string{".", "./backend", "./spine", "./supervision"},
	},
	{pkg: "./cmd/...", imports: []string{"./...", goRedis, otel, prometheus}},
	{
		// Examples are written the way a user would write them: the public API only, and
		// otel for a program's own spans around necro's.
		pkg: "./examples/...",
		imports: []string{".", "./backend", "./backend/memory/...", "./backend/redis/...",
			"./spine/...", "./actors/...", "./supervision/...", "./telemetry/...", "./examples/...", otel},
	},
}

// pkgInfo is the part of `go list -json` output the check reads.
type pkgInfo struct {
	ImportPath string
	Standard   bool
	DepOnly    bool     // listed only as a dependency of a package of ./...
	Imports    []string // non-test imports
	Deps       []string // transitive non-test dependencies
	Error      *struct{ Err string }
}

func TestImportArrows(t *testing.T) {
	pkgs := listPackages(t)
	var own []string
	for _, p := range pkgs {
		if !p.DepOnly && inModule(p.ImportPath) {
			own = append(own, p.ImportPath)
		}
		if p.Error != nil {
			// A package that does not load is the compiler's and vet's to report; its
			// imports are still listed, so the arrows are checked all the same.
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
	}
	if !slices.Contains(own, modulePath) {
		t.Fatalf("go list ./... found no package %s among %q; did the module path change?", modulePath, own)
	}
	for _, v := range check(pkgs, rules) {
		t.Error(v)
	}
	t.Logf("checked the imports of %d packages", len(own))
}

// listPackages runs `go list -deps -json ./...` at the module root.
func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "list", "-e", "-deps",
		"-json=ImportPath,Standard,DepOnly,Imports,Deps,Error", "./...")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list in %s: %v\n%s", root, err, stderr.String())
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(&stdout)
	for {
		var p pkgInfo
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs
		}
		if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
}

// check returns one line per broken arrow among the packages of the module in pkgs,
// sorted. pkgs may also hold their dependencies (as `go list -deps` gives them), which
// tells standard packages apart and explains indirect dependencies.
func check(pkgs []pkgInfo, rules []rule) []string {
	byPath := make(map[string]pkgInfo, len(pkgs))
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	isStd := func(path string) bool {
		if p, ok := byPath[path]; ok {
			return p.Standard
		}
		first, _, _ := strings.Cut(path, "/")
		return !strings.Contains(first, ".")
	}

	// First the direct imports, so that an indirect dependency a broken import already
	// explains is not reported again for every package above it.
	var broken []string
	type edge struct{ from, to string }
	rejected := make(map[edge]bool)
	var governed []pkgInfo
	var governing []rule
	for _, p := range pkgs {
		if p.DepOnly || !inModule(p.ImportPath) {
			continue
		}
		r, ok := ruleFor(p.ImportPath, rules)
		if !ok {
			broken = append(broken, fmt.Sprintf("%s: no rule says what it may import; add one to internal/archtest and an arrow to docs/design.md",
				short(p.ImportPath)))
			continue
		}
		governed, governing = append(governed, p), append(governing, r)
		for _, imp := range p.Imports {
			if isStd(imp) || (strings.HasSuffix(r.pkg, "/...") && match(r.pkg, imp)) || matchAny(r.imports, imp) {
				continue
			}
			rejected[edge{p.ImportPath, imp}] = true
			broken = append(broken, fmt.Sprintf("%s → %s: not an arrow of the design (%s may import %s)",
				short(p.ImportPath), short(imp), short(p.ImportPath), allowed(r.imports)))
		}
	}
	for i, p := range governed {
		for _, pattern := range governing[i].never {
			if !slices.ContainsFunc(p.Deps, func(dep string) bool { return match(pattern, dep) }) {
				continue
			}
			chain := shortestChain(byPath, p.ImportPath, pattern)
			explained := false
			for j := 1; j < len(chain); j++ {
				explained = explained || rejected[edge{chain[j-1], chain[j]}]
			}
			if explained {
				continue
			}
			via := "through a dependency go list did not show"
			if len(chain) > 0 {
				via = "via " + strings.Join(mapShort(chain), " → ")
			}
			broken = append(broken, fmt.Sprintf("%s ⇢ %s: %s must never depend on it, even indirectly (%s)",
				short(p.ImportPath), describe([]string{pattern}), short(p.ImportPath), via))
		}
	}
	slices.Sort(broken)
	return broken
}

// shortestChain finds the shortest import chain from the package from to a package
// matching pattern, or nil when the listed packages show none.
func shortestChain(byPath map[string]pkgInfo, from, pattern string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur != from && match(pattern, cur) {
			var chain []string
			for at := cur; at != ""; at = prev[at] {
				chain = append(chain, at)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, next := range byPath[cur].Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return nil
}

// ruleFor picks the rule with the most specific pattern that matches path.
func ruleFor(path string, rules []rule) (rule, bool) {
	var best rule
	found := false
	for _, r := range rules {
		if match(r.pkg, path) && (!found || len(expand(r.pkg)) > len(expand(best.pkg))) {
			best, found = r, true
		}
	}
	return best, found
}

// expand turns a module-relative pattern into a full one.
func expand(pattern string) string {
	switch {
	case pattern == ".":
		return modulePath
	case strings.HasPrefix(pattern, "./"):
		return modulePath + pattern[1:]
	default:
		return pattern
	}
}

// match reports whether the import path matches the pattern.
func match(pattern, path string) bool {
	full := expand(pattern)
	if base, ok := strings.CutSuffix(full, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == full
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

func inModule(path string) bool { return match("./...", path) }

// short names a package the way the design does: "necro" for the root, module
// packages by their path inside the module, others in full.
func short(path string) string {
	if path == modulePath {
		return "necro"
	}
	if rest, ok := strings.CutPrefix(path, modulePath+"/"); ok {
		return rest
	}
	return path
}

func mapShort(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = short(p)
	}
	return out
}

// describe lists patterns in the design's words.
func describe(patterns []string) string {
	out := make([]string, len(patterns))
	for i, p := range patterns {
		full := expand(p)
		if base, ok := strings.CutSuffix(full, "/..."); ok {
			out[i] = short(base) + "/..."
		} else {
			out[i] = short(full)
		}
	}
	return strings.Join(out, ", ")
}

// allowed says what a rule lets a package import, for a failure message.
func allowed(imports []string) string {
	if len(imports) == 0 {
		return "only the standard library"
	}
	return "the standard library and " + describe(imports)
}

// fakeModule builds go list output for a made-up module from its import edges.
// Names use the rules' notation: "." is the root, "./spine" a package of the module,
// a name whose first element has no dot is standard, anything else is third-party.
func fakeModule(edges map[string][]string) []pkgInfo {
	imports := make(map[string][]string)
	for from, tos := range edges {
		for _, to := range tos {
			imports[expand(from)] = append(imports[expand(from)], expand(to))
			if _, ok := imports[expand(to)]; !ok {
				imports[expand(to)] = nil
			}
		}
		if _, ok := imports[expand(from)]; !ok {
			imports[expand(from)] = nil
		}
	}
	var deps func(path string, seen map[string]bool)
	deps = func(path string, seen map[string]bool) {
		for _, imp := range imports[path] {
			if !seen[imp] {
				seen[imp] = true
				deps(imp, seen)
			}
		}
	}
	var pkgs []pkgInfo
	for path, imps := range imports {
		seen := make(map[string]bool)
		deps(path, seen)
		first, _, _ := strings.Cut(path, "/")
		pkgs = append(pkgs, pkgInfo{
			ImportPath: path,
			Standard:   !strings.Contains(first, "."),
			DepOnly:    !inModule(path),
			Imports:    imps,
			Deps:       slices.Sorted(maps.Keys(seen)),
		})
	}
	slices.SortFunc(pkgs, func(a, b pkgInfo) int { return strings.Compare(a.ImportPath, b.ImportPath) })
	return pkgs
}

func TestCheck(t *testing.T) {
	designAsWritten := map[string][]string{
		".":                            {"fmt", "context"},
		"./supervision":                {".", "time", "github.com/hashicorp/golang-lru/v2/expirable"},
		"./telemetry":                  {".", "go.opentelemetry.io/otel", "go.opentelemetry.io/otel/trace"},
		"./telemetry/otelslog":         {"./telemetry", "log/slog"},
		"./backend":                    {".", "context"},
		"./backend/backendtest":        {".", "./backend", "testing", "pgregory.net/rapid"},
		"./backend/memory":             {".", "./backend", "sync"},
		"./backend/redis":              {".", "./backend", "./telemetry", "github.com/redis/go-redis/v9"},
		"./actors":                     {".", "./supervision", "./telemetry", "github.com/asynkron/protoactor-go/actor"},
		"./spine":                      {".", "./backend", "./actors", "./supervision", "./telemetry", "./internal/backoff"},
		"./internal/backoff":           {"time"},
		"./internal/redisserver":       {"os/exec", "github.com/redis/go-redis/v9"},
		"./cmd/necro-actors":           {"./spine", "./backend/memory", "./backend/redis", "./internal/backoff"},
		"./examples/quickstart":        {".", "./spine", "./backend/memory", "fmt"},
		"github.com/redis/go-redis/v9": {"net"},
	}
	with := func(extra map[string][]string) map[string][]string {
		edges := make(map[string][]string)
		for k, v := range designAsWritten {
			edges[k] = slices.Clone(v)
		}
		for k, v := range extra {
			edges[k] = append(edges[k], v...)
		}
		return edges
	}

	tests := []struct {
		name  string
		edges map[string][]string
		want  []string // what each broken arrow's line starts with, in sorted order
	}{
		{"design as written", designAsWritten, nil},
		{"root imports a third-party module",
			with(map[string][]string{".": {"github.com/redis/go-redis/v9"}}),
			[]string{"necro → github.com/redis/go-redis/v9:"}},
		{"spine imports a concrete backend",
			with(map[string][]string{"./spine": {"./backend/memory"}}),
			[]string{"spine → backend/memory:"}},
		{"spine reaches a concrete backend through internal",
			with(map[string][]string{"./spine": {"./internal/fixture"}, "./internal/fixture": {"./backend/memory"}}),
			[]string{"spine ⇢ backend/memory/...: spine must never depend on it, even indirectly (via spine → internal/fixture → backend/memory)"}},
		{"memory backend imports otel",
			with(map[string][]string{"./backend/memory": {"go.opentelemetry.io/otel"}}),
			[]string{"backend/memory → go.opentelemetry.io/otel:"}},
		{"memory backend reaches otel through telemetry",
			with(map[string][]string{"./backend/memory": {"./telemetry"}}),
			[]string{"backend/memory → telemetry:"}},
		{"protoactor outside actors and spine",
			with(map[string][]string{"./cmd/necro-actors": {"github.com/asynkron/protoactor-go/actor"}}),
			[]string{"cmd/necro-actors → github.com/asynkron/protoactor-go/actor:"}},
		{"go-redis outside its home",
			with(map[string][]string{"./spine": {"github.com/redis/go-redis/v9"}}),
			[]string{"spine → github.com/redis/go-redis/v9:"}},
		{"telemetry imports another package of ours",
			with(map[string][]string{"./telemetry": {"./supervision"}}),
			[]string{"telemetry → supervision:"}},
		{"backend imports a store",
			with(map[string][]string{"./backend": {"./backend/memory"}}),
			[]string{"backend → backend/memory:"}},
		{"example imports internal",
			with(map[string][]string{"./examples/quickstart": {"./internal/backoff"}}),
			[]string{"examples/quickstart → internal/backoff:"}},
		{"package without a rule",
			with(map[string][]string{"./util": {"fmt"}}),
			[]string{"util: no rule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(fakeModule(tt.edges), rules)
			ok := len(got) == len(tt.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tt.want[i])
			}
			if !ok {
				t.Errorf("check() =\n\t%s\nwant lines starting with\n\t%s",
					strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// TestTestImportsDoNotCount decodes go list output in which spine's tests import the
// memory backend and go-redis: the arrows hold for the code that ships, so test-only
// imports (TestImports, XTestImports) must not count.
func TestTestImportsDoNotCount(t *testing.T) {
	out := `{"ImportPath": "github.com/necrostack/necro/spine",
		"Imports": ["context", "github.com/necrostack/necro/backend"],
		"Deps": ["context", "github.com/necrostack/necro/backend"],
		"TestImports": ["github.com/necrostack/necro/backend/memory", "testing"],
		"XTestImports": ["github.com/redis/go-redis/v9"]}
	{"ImportPath": "github.com/necrostack/necro/backend", "Imports": ["context"], "Deps": ["context"]}
	{"ImportPath": "context", "Standard": true, "DepOnly": true}`
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if got := check(pkgs, rules); len(got) != 0 {
		t.Errorf("check() = %q, want nothing broken", got)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{".", modulePath, true},
		{".", modulePath + "/spine", false},
		{"./backend", modulePath + "/backend", true},
		{"./backend", modulePath + "/backend/memory", false},
		{"./backend/...", modulePath + "/backend", true},
		{"./backend/...", modulePath + "/backend/memory", true},
		{"./backend/...", modulePath + "/backendx", false},
		{"./...", modulePath, true},
		{otel, "go.opentelemetry.io/otel/sdk/metric", true},
		{goRedis, "github.com/redis/go-redis/extra/redisotel/v9", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.path); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}
