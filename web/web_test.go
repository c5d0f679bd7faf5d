package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestServe checks what every file is served with: its type, a tag that
// a revalidation matches, gzip only for those who accept it, and the
// security headers.
func TestServe(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, headers ...string) *http.Response {
		req := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Result()
	}
	for path, ctype := range map[string]string{
		"/":                     "text/html; charset=utf-8",
		"/console/":             "text/html; charset=utf-8",
		"/static/js/shop.js":    "text/javascript; charset=utf-8",
		"/static/js/api.js":     "text/javascript; charset=utf-8",
		"/static/css/souk.css":  "text/css; charset=utf-8",
		"/static/js/console.js": "text/javascript; charset=utf-8",
	} {
		r := get(path)
		body, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != ctype || len(body) == 0 || r.Header.Get("Content-Encoding") != "" {
			t.Errorf("GET %s: %d, %q, %d bytes, encoding %q; want 200 %s, plain", path, r.StatusCode, r.Header.Get("Content-Type"), len(body), r.Header.Get("Content-Encoding"), ctype)
			continue
		}
		if !strings.Contains(r.Header.Get("Content-Security-Policy"), "script-src 'self'") || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: security headers %v", path, r.Header)
		}
		etag := r.Header.Get("ETag")
		if again := get(path, "If-None-Match", etag); etag == "" || again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s: %d, want 304", path, etag, again.StatusCode)
		}
		if len(body) < 512 {
			continue // too small to be worth compressing
		}
		z := get(path, "Accept-Encoding", "gzip, deflate, br")
		if z.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("GET %s accepting gzip: Content-Encoding %q", path, z.Header.Get("Content-Encoding"))
			continue
		}
		zr, err := gzip.NewReader(z.Body)
		if err != nil {
			t.Fatal(err)
		}
		if unzipped, _ := io.ReadAll(zr); !bytes.Equal(unzipped, body) {
			t.Errorf("GET %s: the gzipped body is not the file", path)
		}
		if r := get(path, "Accept-Encoding", "gzip;q=0, identity"); r.Header.Get("Content-Encoding") != "" {
			t.Errorf("GET %s refusing gzip: got %q", path, r.Header.Get("Content-Encoding"))
		}
	}
	if r := get("/static/nothing.js"); r.StatusCode != 404 || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("a missing file: %d %q, want a 404 problem", r.StatusCode, r.Header.Get("Content-Type"))
	}
}

// TestHomeBudget keeps the storefront's first load small: the page, its
// stylesheet and the scripts it loads, compressed as served.
func TestHomeBudget(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, path := range []string{"/", "/static/css/souk.css", "/static/js/shop.js", "/static/js/api.js"} {
		f := s.files[path]
		if f == nil {
			t.Fatalf("no %s", path)
		}
		total += len(f.body)
	}
	if total > 100<<10 {
		t.Errorf("the storefront's home loads %d bytes of HTML, CSS and JS (uncompressed); the budget is 100 KiB", total)
	}
	t.Logf("storefront home: %d bytes uncompressed", total)
}
