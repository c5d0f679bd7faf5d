package server

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/souk-shop/souk/platform/problem"
)

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Health serves /healthz (the process is alive) and /readyz (its
// dependencies answer and it is not shutting down).
type Health struct {
	checks   map[string]Check
	draining atomic.Bool
}

// NewHealth returns a Health that runs checks on every /readyz.
func NewHealth(checks map[string]Check) *Health {
	return &Health{checks: checks}
}

// Drain makes /readyz fail from now on, so that load balancers stop
// sending new requests while in-flight ones finish.
func (h *Health) Drain() { h.draining.Store(true) }

// Routes registers /healthz and /readyz.
func (h *Health) Routes(rt *Router) {
	rt.Handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	})
	rt.Handle("GET /readyz", h.ready)
}

func (h *Health) ready(w http.ResponseWriter, r *http.Request) error {
	if h.draining.Load() {
		return problem.New(problem.Unavailable, "shutting down")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var fields []problem.FieldError
	for name, check := range h.checks {
		if err := check(ctx); err != nil {
			fields = append(fields, problem.FieldError{Field: name, Detail: err.Error()})
		}
	}
	if len(fields) > 0 {
		return &problem.Error{Code: problem.Unavailable, Detail: "a dependency is not ready", Fields: fields}
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
