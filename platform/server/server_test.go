package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/telemetry"
)

type item struct {
	Name  *string `json:"name"`
	Count *int64  `json:"count"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, body, contentType string
		code                    problem.Code
		field                   string
	}{
		{"valid", `{"name":"x","count":2}`, "application/json", "", ""},
		{"no content type", `{"name":"x"}`, "", "", ""},
		{"json with charset", `{"name":"x"}`, "application/json; charset=utf-8", "", ""},
		{"form content type", `name=x`, "application/x-www-form-urlencoded", problem.Invalid, ""},
		{"malformed", `{"name":`, "application/json", problem.Invalid, ""},
		{"syntax error", `{"name" "x"}`, "application/json", problem.Invalid, ""},
		{"empty", ``, "application/json", problem.Invalid, ""},
		{"unknown field", `{"name":"x","colour":"red"}`, "application/json", problem.Invalid, "colour"},
		{"wrong type", `{"count":"two"}`, "application/json", problem.Invalid, "count"},
		{"not an object", `[1,2]`, "application/json", problem.Invalid, ""},
		{"two values", `{"name":"x"}{"name":"y"}`, "application/json", problem.Invalid, ""},
		{"too large", `{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, "application/json", problem.TooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body))
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			var v item
			err := Decode(httptest.NewRecorder(), r, &v)
			if c.code == "" {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want nil", c.body, err)
				}
				return
			}
			p, ok := err.(*problem.Error)
			if !ok || p.Code != c.code {
				t.Fatalf("Decode(%.40s) = %v, want code %s", c.body, err, c.code)
			}
			if c.field != "" && (len(p.Fields) != 1 || p.Fields[0].Field != c.field) {
				t.Fatalf("Decode(%s) fields = %+v, want one naming %q", c.body, p.Fields, c.field)
			}
		})
	}
}

func newTestRouter(logs io.Writer) *Router {
	log, _ := telemetry.NewLogger(logs, "json", "info")
	rt := NewRouter(log, telemetry.NewHTTPMetrics(prometheus.NewRegistry()))
	rt.Handle("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) error {
		switch r.PathValue("id") {
		case "missing":
			return problem.New(problem.NotFound, "thing missing not found")
		case "bug":
			return io.ErrUnexpectedEOF
		case "panic":
			panic("boom")
		}
		WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
		return nil
	})
	return rt
}

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) problem.Body {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, rec.Body)
	}
	var b problem.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body, err)
	}
	return b
}

func TestRouter(t *testing.T) {
	var logs bytes.Buffer
	rt := newTestRouter(&logs)
	cases := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/things/7", 200, ""},
		{"GET", "/things/missing", 404, ""},
		{"GET", "/nowhere", 404, ""},
		{"DELETE", "/things/7", 405, "GET, HEAD"},
		{"GET", "/things/bug", 500, ""},
		{"GET", "/things/panic", 500, ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, rec.Code, c.status)
			continue
		}
		if c.allow != "" && rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, rec.Header().Get("Allow"), c.allow)
		}
		if c.status >= 400 {
			b := decodeProblem(t, rec)
			if b.Status != c.status || b.RequestID == "" || b.RequestID != rec.Header().Get(HeaderRequestID) {
				t.Errorf("%s %s: problem %+v", c.method, c.path, b)
			}
			if c.status == 500 && strings.Contains(b.Detail, "unexpected EOF") {
				t.Errorf("%s %s: a 500 shows its cause to the client: %q", c.method, c.path, b.Detail)
			}
		}
	}
	if !strings.Contains(logs.String(), `"panic":"boom"`) || !strings.Contains(logs.String(), "unexpected EOF") {
		t.Errorf("the panic and the 500's cause are not logged:\n%s", logs.String())
	}
}

func TestRouterRequestID(t *testing.T) {
	var logs bytes.Buffer
	rt := newTestRouter(&logs)
	cases := []struct{ sent, want string }{
		{"abc-123", "abc-123"},
		{"", ""},
		{"evil\nline", ""},
		{strings.Repeat("a", 65), ""},
	}
	for _, c := range cases {
		logs.Reset()
		r := httptest.NewRequest("GET", "/things/7", nil)
		r.Header.Set(HeaderRequestID, c.sent)
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, r)
		got := rec.Header().Get(HeaderRequestID)
		if c.want != "" && got != c.want || c.want == "" && (got == c.sent || len(got) != 32) {
			t.Errorf("sent X-Request-Id %q: response has %q", c.sent, got)
		}
		var line map[string]any
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil || line["request_id"] != got {
			t.Errorf("sent %q: access log line %s has no request_id %q", c.sent, logs.String(), got)
		}
	}
}

func TestHealth(t *testing.T) {
	var dbErr error
	h := NewHealth(map[string]Check{"database": func(context.Context) error { return dbErr }})
	rt := newTestRouter(io.Discard)
	h.Routes(rt)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	if rec := get("/readyz"); rec.Code != 200 {
		t.Fatalf("/readyz with a healthy database: %d %s", rec.Code, rec.Body)
	}
	dbErr = errors.New("disk on fire")
	rec := get("/readyz")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "disk on fire") {
		t.Fatalf("/readyz with a failing database: %d %s", rec.Code, rec.Body)
	}
	if b := decodeProblem(t, rec); len(b.Errors) != 1 || b.Errors[0].Field != "database" {
		t.Fatalf("/readyz does not name the failing dependency: %+v", b)
	}
	if rec := get("/healthz"); rec.Code != 200 {
		t.Fatalf("/healthz must not depend on dependencies: %d", rec.Code)
	}
	dbErr = nil
	h.Drain()
	if rec := get("/readyz"); rec.Code != 503 {
		t.Fatalf("/readyz while draining: %d, want 503", rec.Code)
	}
}

func TestServerLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	cfg.MaxHeaderBytes = 1 << 10
	srv, err := Listen("127.0.0.1:0", newTestRouter(io.Discard), slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	t.Run("a client that never finishes its headers is cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "GET /things/7 HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(conn)
		if err != nil || time.Since(start) > 2*time.Second {
			t.Fatalf("connection still open %s after a stalled header (err %v)", time.Since(start), err)
		}
	})

	t.Run("oversized headers get 431", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL()+"/things/7", nil)
		req.Header.Set("X-Big", strings.Repeat("x", 8<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
	})

	t.Run("shutdown lets an in-flight request finish", func(t *testing.T) {
		release := make(chan struct{})
		rt := newTestRouter(io.Discard)
		rt.Handle("GET /slow", func(w http.ResponseWriter, r *http.Request) error {
			<-release
			WriteJSON(w, 200, "done")
			return nil
		})
		slow, err := Listen("127.0.0.1:0", rt, slog.New(slog.DiscardHandler), DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		go slow.Serve()
		got := make(chan int, 1)
		go func() {
			resp, err := http.Get(slow.URL() + "/slow")
			if err != nil {
				got <- 0
				return
			}
			resp.Body.Close()
			got <- resp.StatusCode
		}()
		time.Sleep(100 * time.Millisecond) // let the request arrive
		stopped := make(chan error, 1)
		go func() { stopped <- slow.Shutdown(context.Background()) }()
		time.Sleep(100 * time.Millisecond)
		close(release)
		if code := <-got; code != 200 {
			t.Fatalf("in-flight request during shutdown: status %d, want 200", code)
		}
		if err := <-stopped; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}
