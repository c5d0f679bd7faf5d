package openapitest_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/souk-shop/souk/internal/openapitest"
)

const (
	id      = "0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
	product = `{"id":"` + id + `","name":"Lamp","description":"","price":{"amount":4999,"currency":"EUR"},` +
		`"created_at":"2026-01-02T03:04:05.123456Z","updated_at":"2026-01-02T03:04:05.123456Z"}`
	newProduct = `{"name":"Lamp","price":{"amount":4999,"currency":"EUR"}}`
	notFound   = `{"type":"about:blank","title":"Not Found","status":404,"detail":"product ` + id + ` not found","code":"not_found","request_id":"r1"}`
)

// TestCheck shows what Check lets through and what it refuses.
func TestCheck(t *testing.T) {
	spec, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		method, path string
		reqHeader    http.Header
		reqBody      string
		status       int
		header       http.Header
		body         []byte
		wantErr      string // "" for none
	}{
		{name: "a product", method: "GET", path: "/api/products/" + id, status: 200,
			header: jsonHeader("RateLimit-Policy", `"address";q=100;w=2`, "RateLimit", `"address";r=99;t=1`, "ETag", `W/"ab12"`),
			body:   []byte(product)},
		{name: "not modified", method: "GET", path: "/api/products/" + id, reqHeader: http.Header{"If-None-Match": {`"ab12"`}},
			status: 304, header: http.Header{"Etag": {`"ab12"`}}},
		{name: "a field the spec does not name", method: "GET", path: "/api/products/" + id, status: 200,
			header: jsonHeader(), body: []byte(strings.Replace(product, `"name"`, `"colour":"red","name"`, 1)), wantErr: "'colour' not allowed"},
		{name: "a status the spec does not list", method: "GET", path: "/api/products/" + id, status: 418,
			header: problemHeader(), body: []byte(notFound), wantErr: "'418' does not exist"},
		{name: "a malformed header", method: "GET", path: "/api/products/" + id, status: 200,
			header: jsonHeader("RateLimit", "99 left"), body: []byte(product), wantErr: "ratelimit"},
		{name: "an id that is no UUID", method: "GET", path: "/api/products/" + id, status: 200,
			header: jsonHeader(), body: []byte(strings.Replace(product, id, "7", 1)), wantErr: "uuid"},
		{name: "an error", method: "GET", path: "/api/products/" + id, status: 404, header: problemHeader(), body: []byte(notFound)},
		{name: "an error as JSON", method: "GET", path: "/api/products/" + id, status: 404,
			header: jsonHeader(), body: []byte(notFound), wantErr: "application/json"},
		{name: "a challenge of another scheme", method: "GET", path: "/api/catalog/stats", reqHeader: http.Header{"Authorization": {"Bearer x"}},
			status: 401, header: problemHeader("WWW-Authenticate", "Basic"), body: []byte(strings.ReplaceAll(notFound, "404", "401")), wantErr: "www-authenticate"},
		{name: "an invalid request, refused", method: "POST", path: "/api/products", reqHeader: admin(), reqBody: `{"name":"Lamp"}`,
			status: 400, header: problemHeader(), body: []byte(strings.ReplaceAll(notFound, "404", "400"))},
		{name: "an invalid request, accepted", method: "POST", path: "/api/products", reqHeader: admin(), reqBody: `{"name":"Lamp"}`,
			status: 201, header: jsonHeader(), body: []byte(product), wantErr: "the request, which succeeded"},
		{name: "a valid request, accepted", method: "POST", path: "/api/products", reqHeader: admin(), reqBody: newProduct,
			status: 201, header: jsonHeader("Location", "/api/products/"+id), body: []byte(product)},
		{name: "gzip", method: "GET", path: "/api/products/" + id, status: 200,
			header: jsonHeader("Content-Encoding", "gzip"), body: gzipped(t, product)},
		{name: "zstd", method: "GET", path: "/api/products/" + id, status: 200,
			header: jsonHeader("Content-Encoding", "zstd"), body: zstded(t, strings.Replace(product, `"name"`, `"colour":"red","name"`, 1)), wantErr: "'colour' not allowed"},
		{name: "a route only tests have", method: "GET", path: "/api/echo/x", status: 200, header: jsonHeader(), body: []byte(`{"x":1}`)},
		{name: "a method the route does not list", method: "TRACE", path: "/api/products", status: 405, header: problemHeader(), body: []byte("{}")},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, "http://127.0.0.1:8080"+c.path, strings.NewReader(c.reqBody))
			if err != nil {
				t.Fatal(err)
			}
			for k, vs := range c.reqHeader {
				req.Header[k] = vs
			}
			if c.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp := &http.Response{StatusCode: c.status, Header: c.header}
			err = spec.Check(req, []byte(c.reqBody), resp, c.body)
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("%s %s answering %d: %v", c.method, c.path, c.status, err)
			case c.wantErr != "" && (err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.wantErr))):
				t.Errorf("%s %s answering %d: error %v, want one about %q", c.method, c.path, c.status, err, c.wantErr)
			}
		})
	}
}

func jsonHeader(kv ...string) http.Header    { return header("application/json", kv) }
func problemHeader(kv ...string) http.Header { return header("application/problem+json", kv) }

func header(contentType string, kv []string) http.Header {
	h := http.Header{"Content-Type": {contentType}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func admin() http.Header { return http.Header{"Authorization": {"Bearer a.b.c"}} }

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstded(t *testing.T, s string) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll([]byte(s), nil)
}
