// Package web is Souk's face in the browser: the storefront (/) for
// customers and the console (/console/) for operators, as plain HTML, CSS
// and JavaScript modules embedded in the binary, with no build step. The
// pages are clients of the public API like any other: they call the
// gateway's /api/… with the token the customer or admin logged in with.
//
// Every file is served with a strong ETag and Cache-Control: no-cache,
// so a browser keeps a copy and asks only whether it changed (a 304 costs
// no body), and compressed (gzip, made once at start) when the browser
// accepts it. The pages may load scripts, styles and data from this
// origin only (Content-Security-Policy).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/souk-shop/souk/platform/problem"
)

//go:embed static
var static embed.FS

// Pages are the HTML documents and where they are served.
var pages = map[string]string{
	"/":         "index.html",
	"/console/": "console.html",
}

// Security headers of every answer: only this origin's scripts, styles,
// images and API; no framing; no referrer to other sites.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// file is one embedded file, ready to serve.
type file struct {
	body, gzipped []byte
	etag, ctype   string
}

// Site serves the embedded pages and files.
type Site struct {
	files map[string]*file // by URL path
}

// New loads every embedded file, computing its tag and compressed form.
func New() (*Site, error) {
	s := &Site{files: map[string]*file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &file{body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`, ctype: mime.TypeByExtension(path.Ext(p))}
		switch path.Ext(p) {
		case ".js":
			f.ctype = "text/javascript; charset=utf-8"
			fallthrough
		case ".html", ".css", ".svg":
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			if _, err := zw.Write(body); err != nil {
				return err
			}
			if err := zw.Close(); err != nil {
				return err
			}
			if buf.Len() < len(body) {
				f.gzipped = buf.Bytes()
			}
		}
		rel := strings.TrimPrefix(p, "static/")
		s.files["/static/"+rel] = f
		for at, page := range pages {
			if rel == page {
				s.files[at] = f
			}
		}
		return nil
	})
	return s, err
}

// Patterns are the ServeMux patterns the site answers.
func Patterns() []string {
	return []string{"GET /{$}", "GET /console/{$}", "GET /static/{file...}"}
}

// Untraced reports whether a request for path is for the site's files,
// which a server need not trace: a page load is a handful of them, and
// they would crowd the traces people look for out of memory.
func Untraced(path string) bool {
	return path == "/" || path == "/console/" || strings.HasPrefix(path, "/static/")
}

// ServeHTTP serves an embedded file.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := s.files[r.URL.Path]
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if !ok {
		problem.Write(w, problem.New(problem.NotFound, "no file %s", r.URL.Path))
		return
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("Content-Type", f.ctype)
	if f.gzipped != nil {
		h.Set("Vary", "Accept-Encoding")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if f.gzipped != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body = f.gzipped
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (RFC 9110 12.5.3: listed, or covered by *, with a weight above 0).
func acceptsGzip(accept string) bool {
	allowed := false
	for item := range strings.SplitSeq(accept, ",") {
		name, params, _ := strings.Cut(item, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		weight := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				weight = f
			}
		}
		if name == "gzip" {
			return weight > 0
		}
		allowed = weight > 0
	}
	return allowed
}
