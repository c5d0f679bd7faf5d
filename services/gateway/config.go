package gateway

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/souk-shop/souk/platform/resilience"
)

//go:embed default.yaml
var defaultConfig []byte

// Config is the gateway's routes, policies and limits.
type Config struct {
	Defaults Defaults          `yaml:"defaults"`
	Upstream resilience.Config `yaml:"upstream"`
	Routes   []Route           `yaml:"routes"`
}

// Defaults apply to every route that does not set its own.
type Defaults struct {
	Timeout      time.Duration `yaml:"timeout"`
	MaxBodyBytes int64         `yaml:"max_body_bytes"`
	StripPrefix  string        `yaml:"strip_prefix"`
	RateLimit    RateLimits    `yaml:"rate_limit"`
	// CORS, if set, lets browsers on other origins call every route that
	// has no cors of its own (a storefront on its own origin, say).
	CORS *CORS `yaml:"cors"`
}

// RateLimits are token buckets per client address, per user and per API
// key; nil means no limit on that dimension.
type RateLimits struct {
	Address *Limit `yaml:"address"`
	User    *Limit `yaml:"user"`
	Key     *Limit `yaml:"key"`
}

// Limit is a token bucket: RPS tokens a second, up to Burst.
type Limit struct {
	RPS   float64 `yaml:"rps"`
	Burst int     `yaml:"burst"`
}

// Policies: who may call a route.
const (
	Public        = "public"        // anyone; an identity is still passed on if one is given
	Authenticated = "authenticated" // a valid token or API key
	Admin         = "admin"         // and the admin role
)

// Route maps requests to a service.
type Route struct {
	// Path is an http.ServeMux path pattern: /api/users/{id}.
	Path    string   `yaml:"path"`
	Methods []string `yaml:"methods"`
	Service string   `yaml:"service"`
	Policy  string   `yaml:"policy"`
	// These override the defaults for this route.
	StripPrefix  *string       `yaml:"strip_prefix"`
	Timeout      time.Duration `yaml:"timeout"`
	MaxBodyBytes int64         `yaml:"max_body_bytes"`
	RateLimit    *RateLimits   `yaml:"rate_limit"`
	CORS         *CORS         `yaml:"cors"`

	line int // in the config file, for error messages
}

// CORS lets browsers on Origins call the route.
type CORS struct {
	Origins     []string      `yaml:"origins"` // "*" for any
	Headers     []string      `yaml:"headers"` // request headers allowed beyond the simple ones
	MaxAge      time.Duration `yaml:"max_age"` // how long a preflight answer may be cached
	Credentials bool          `yaml:"credentials"`
}

// DefaultConfig is the built-in configuration (default.yaml).
func DefaultConfig() Config {
	cfg, err := ParseConfig(defaultConfig)
	if err != nil {
		panic("gateway: the built-in default.yaml is invalid: " + err.Error())
	}
	return cfg
}

// WithoutRateLimits returns c with every rate limit off: for load tests,
// which send hundreds of requests a second from one address.
func (c Config) WithoutRateLimits() Config {
	c.Defaults.RateLimit = RateLimits{}
	c.Routes = slices.Clone(c.Routes)
	for i := range c.Routes {
		c.Routes[i].RateLimit = nil
	}
	return c
}

// LoadConfig reads a configuration file, YAML or JSON; "" means the
// built-in one.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return DefaultConfig(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gateway config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("gateway config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and checks a configuration. Unknown keys, wrong
// types and impossible values are errors that name the line.
func ParseConfig(b []byte) (Config, error) {
	// First strictly, so that unknown keys and wrong types fail with their
	// line; then again as nodes, for the line of each route.
	cfg := Config{Upstream: resilience.DefaultConfig()}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, err
	}
	var lines struct {
		Routes []yaml.Node `yaml:"routes"`
	}
	if err := yaml.Unmarshal(b, &lines); err != nil {
		return Config{}, err
	}
	if err := cfg.Upstream.Validate(); err != nil {
		return Config{}, fmt.Errorf("upstream.%w", err)
	}
	if err := cfg.Defaults.validate(); err != nil {
		return Config{}, fmt.Errorf("defaults.%w", err)
	}
	if len(cfg.Routes) == 0 {
		return Config{}, errors.New("routes: at least one route is needed")
	}
	seen := map[string]int{}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		r.line = lines.Routes[i].Line
		if err := r.validate(); err != nil {
			return Config{}, fmt.Errorf("line %d (routes[%d] %s): %w", r.line, i, r.Path, err)
		}
		for _, m := range r.Methods {
			key := m + " " + r.Path
			if prev, dup := seen[key]; dup {
				return Config{}, fmt.Errorf("line %d (routes[%d]): %s is already routed at line %d", r.line, i, key, prev)
			}
			seen[key] = r.line
		}
	}
	return cfg, nil
}

func (d Defaults) validate() error {
	switch {
	case d.Timeout <= 0:
		return errors.New("timeout: must be positive, like 5s")
	case d.MaxBodyBytes <= 0:
		return errors.New("max_body_bytes: must be positive")
	case d.StripPrefix != "" && !strings.HasPrefix(d.StripPrefix, "/"):
		return errors.New("strip_prefix: must start with /")
	}
	if err := d.CORS.validate(); err != nil {
		return err
	}
	return d.RateLimit.validate("rate_limit")
}

func (l RateLimits) validate(at string) error {
	for name, lim := range map[string]*Limit{"address": l.Address, "user": l.User, "key": l.Key} {
		if lim != nil && (lim.RPS <= 0 || lim.Burst < 1) {
			return fmt.Errorf("%s.%s: rps must be positive and burst at least 1", at, name)
		}
	}
	return nil
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (r *Route) validate() error {
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, " \t") {
		return errors.New("path: must be a path like /api/users/{id}")
	}
	if len(r.Methods) == 0 {
		return errors.New("methods: list the methods, e.g. [GET, POST]")
	}
	for i, m := range r.Methods {
		r.Methods[i] = strings.ToUpper(m)
		if !slices.Contains(methods, r.Methods[i]) {
			return fmt.Errorf("methods: %q is not one of %v", m, methods)
		}
	}
	if r.Service == "" || strings.ContainsAny(r.Service, "./: ") {
		return errors.New("service: a service name like users is required")
	}
	if r.Policy != Public && r.Policy != Authenticated && r.Policy != Admin {
		return fmt.Errorf("policy: %q is not public, authenticated or admin", r.Policy)
	}
	if r.StripPrefix != nil && *r.StripPrefix != "" && !strings.HasPrefix(r.Path, *r.StripPrefix) {
		return fmt.Errorf("strip_prefix: %q is not a prefix of the path", *r.StripPrefix)
	}
	if r.Timeout < 0 || r.MaxBodyBytes < 0 {
		return errors.New("timeout and max_body_bytes must not be negative")
	}
	if r.RateLimit != nil {
		if err := r.RateLimit.validate("rate_limit"); err != nil {
			return err
		}
	}
	return r.CORS.validate()
}

func (c *CORS) validate() error {
	if c == nil {
		return nil
	}
	if len(c.Origins) == 0 {
		return errors.New("cors.origins: list the origins allowed, or \"*\"")
	}
	if c.Credentials && slices.Contains(c.Origins, "*") {
		return errors.New("cors: credentials cannot go with origin \"*\"")
	}
	return nil
}

// withDefaults fills what the route does not set from d.
func (r Route) withDefaults(d Defaults) Route {
	if r.StripPrefix == nil {
		p := d.StripPrefix
		r.StripPrefix = &p
	}
	if r.Timeout == 0 {
		r.Timeout = d.Timeout
	}
	if r.MaxBodyBytes == 0 {
		r.MaxBodyBytes = d.MaxBodyBytes
	}
	if r.RateLimit == nil {
		rl := d.RateLimit
		r.RateLimit = &rl
	}
	if r.CORS == nil {
		r.CORS = d.CORS
	}
	return r
}
