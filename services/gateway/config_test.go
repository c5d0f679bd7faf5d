package gateway

import (
	"strings"
	"testing"
)

func TestDefaultConfigParses(t *testing.T) {
	cfg := DefaultConfig()
	if len(cfg.Routes) == 0 || cfg.Defaults.Timeout <= 0 || cfg.Upstream.MaxInFlight <= 0 {
		t.Fatalf("default config: %+v", cfg)
	}
}

// TestConfigErrors checks that a bad configuration fails with a message
// naming the line or key at fault.
func TestConfigErrors(t *testing.T) {
	const good = `defaults: {timeout: 5s, max_body_bytes: 1024, strip_prefix: /api}
routes:
  - {path: /api/users, methods: [GET], service: users, policy: public}
`
	if _, err := ParseConfig([]byte(good)); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	cases := []struct{ name, yaml, want string }{
		{"unknown key", good + "colour: blue\n", "field colour not found"},
		{"unknown route key", strings.Replace(good, "policy: public", "policy: public, pollicy: admin", 1), "line 3"},
		{"bad policy", strings.Replace(good, "policy: public", "policy: admn", 1), `line 3 (routes[0] /api/users): policy: "admn"`},
		{"bad method", strings.Replace(good, "[GET]", "[FETCH]", 1), `line 3 (routes[0] /api/users): methods: "FETCH"`},
		{"no service", strings.Replace(good, "service: users, ", "", 1), "service"},
		{"relative path", strings.Replace(good, "path: /api/users", "path: api/users", 1), "path"},
		{"bad duration", strings.Replace(good, "timeout: 5s", "timeout: soon", 1), "line 1"},
		{"no timeout", strings.Replace(good, "timeout: 5s, ", "", 1), "defaults.timeout"},
		{"no routes", "defaults: {timeout: 5s, max_body_bytes: 1024}\n", "routes"},
		{"bad rate limit", strings.Replace(good, "policy: public}", "policy: public, rate_limit: {address: {rps: 0, burst: 1}}}", 1), "rate_limit.address"},
		{"duplicate route", good + "  - {path: /api/users, methods: [GET], service: other, policy: public}\n", "already routed at line 3"},
		{"bad upstream", good + "upstream: {retries: 99}\n", "upstream.retries"},
		{"cors credentials with any origin", strings.Replace(good, "policy: public}", `policy: public, cors: {origins: ["*"], credentials: true}}`, 1), "cors"},
		{"not yaml", "{{{", "yaml"},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}
