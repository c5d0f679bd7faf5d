package server

import (
	"bufio"
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
	"strconv"
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
		{"form content type", `name=x`, "application/x-www-form-urlencoded", problem.UnsupportedMedia, ""},
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

	// net/http answers these itself, before any handler; they still come
	// as problem+json.
	for _, c := range []struct {
		name, request string
		status        int
		code          problem.Code
	}{
		{"oversized headers", "GET /things/7 HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("x", 8<<10) + "\r\n\r\n", 431, problem.HeadersTooLarge},
		{"no Host header", "GET /things/7 HTTP/1.1\r\n\r\n", 400, problem.Invalid},
		{"a malformed request line", "GET\r\n\r\n", 400, problem.Invalid},
		{"an unknown transfer coding", "POST /things HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n", 501, problem.NotImplemented},
		{"HTTP/2.0 on HTTP/1", "GET /things/7 HTTP/2.0\r\nHost: x\r\n\r\n", 505, problem.Invalid},
	} {
		t.Run(c.name+" get problem+json", func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprint(conn, c.request)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer to %q: %v", c.request[:min(len(c.request), 40)], err)
			}
			defer resp.Body.Close()
			var p problem.Body
			err = json.NewDecoder(resp.Body).Decode(&p)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" || err != nil ||
				p.Status != c.status || p.Code != c.code || p.Detail == "" {
				t.Fatalf("%s: status %d, Content-Type %q, body %+v (%v); want %d problem+json with code %s",
					c.name, resp.StatusCode, resp.Header.Get("Content-Type"), p, err, c.status, c.code)
			}
		})
	}

	t.Run("a handler's plain-text answer is left alone", func(t *testing.T) {
		rt := newTestRouter(io.Discard)
		rt.HandleHTTP("GET /text", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(400)
			io.WriteString(w, "400 Bad Request")
		}))
		plain, err := Listen("127.0.0.1:0", rt, slog.New(slog.DiscardHandler), DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		go plain.Serve()
		defer plain.Shutdown(context.Background())
		resp, err := http.Get(plain.URL() + "/text")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || string(b) != "400 Bad Request" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("a handler's own answer was changed: %d %q %v", resp.StatusCode, b, resp.Header)
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

func TestWriteCacheable(t *testing.T) {
	serve := func(ifNoneMatch ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/things/7", nil)
		for _, v := range ifNoneMatch {
			r.Header.Add("If-None-Match", v)
		}
		rec := httptest.NewRecorder()
		WriteCacheable(rec, r, "public, max-age=5", map[string]string{"name": "lamp"})
		return rec
	}
	first := serve()
	etag := first.Header().Get("ETag")
	if first.Code != 200 || len(etag) < 10 || etag[0] != '"' || first.Header().Get("Cache-Control") != "public, max-age=5" ||
		first.Header().Get("Content-Length") != strconv.Itoa(first.Body.Len()) {
		t.Fatalf("first answer: %d %v %q", first.Code, first.Header(), first.Body)
	}
	if again := serve(); again.Header().Get("ETag") != etag {
		t.Fatalf("the same body got another tag: %s, then %s", etag, again.Header().Get("ETag"))
	}
	for _, c := range []struct {
		ifNoneMatch []string
		status      int
	}{
		{[]string{etag}, 304},
		{[]string{"W/" + etag}, 304}, // weak comparison: what a compressing proxy sends back
		{[]string{`"other", ` + etag}, 304},
		{[]string{`"other"`, etag}, 304},
		{[]string{"*"}, 304},
		{[]string{`"other"`}, 200},
		{[]string{strings.Trim(etag, `"`)}, 200}, // not a quoted tag
	} {
		rec := serve(c.ifNoneMatch...)
		if rec.Code != c.status || rec.Header().Get("ETag") != etag || (c.status == 304) != (rec.Body.Len() == 0) {
			t.Errorf("If-None-Match %q: %d with %d bytes and ETag %q; want %d, ETag %s",
				c.ifNoneMatch, rec.Code, rec.Body.Len(), rec.Header().Get("ETag"), c.status, etag)
		}
	}
}
