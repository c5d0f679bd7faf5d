// Package architecture pins the dependency rules of the tree, so that they
// hold by test rather than by habit:
//
//   - platform/ is machinery: it imports no service, no internal package and
//     no contract;
//   - a service imports no other service: services meet through contracts
//     (api/), HTTP and events;
//   - api/ (the published contracts) imports only the standard library and
//     other contracts;
//   - cmd/ and bench/ reach services only through internal/system.
package architecture

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/souk-shop/souk/"

type pkg struct {
	ImportPath string
	Imports    []string // not the tests'
}

func packages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	return pkgs
}

// top is the first two elements of a path inside the module:
// services/orders, platform/events, api/saga.
func top(path string) string {
	parts := strings.SplitN(path, "/", 3)
	if len(parts) < 2 {
		return path
	}
	return parts[0] + "/" + parts[1]
}

func TestDependencyRules(t *testing.T) {
	pkgs := packages(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: the rules would check nothing", len(pkgs))
	}
	std := func(imp string) bool { return !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") }
	for path, p := range pkgs {
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module)
			var broken string
			switch {
			case strings.HasPrefix(path, "platform/") && ours &&
				(strings.HasPrefix(dep, "services/") || strings.HasPrefix(dep, "internal/") || strings.HasPrefix(dep, "api/")):
				broken = "platform imports no service, internal package or contract"
			case strings.HasPrefix(path, "services/") && ours && strings.HasPrefix(dep, "services/") && top(dep) != top(path):
				broken = "a service imports no other service"
			case strings.HasPrefix(path, "api/") && !std(imp) && !(ours && strings.HasPrefix(dep, "api/")):
				broken = "contracts import only the standard library and other contracts"
			case (strings.HasPrefix(path, "cmd/") || strings.HasPrefix(path, "bench/")) && ours && strings.HasPrefix(dep, "services/"):
				broken = "cmd and bench reach services only through internal/system"
			}
			if broken != "" {
				t.Errorf("%s imports %s: %s", path, imp, broken)
			}
		}
	}
}
