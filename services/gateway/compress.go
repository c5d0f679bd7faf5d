package gateway

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The gateway compresses JSON answers of at least minCompressed bytes for
// clients that accept zstd or gzip, at the fastest levels: on the loopback
// and LAN links of a shop's API the CPU is worth more than the last bytes.
// Streams (text/event-stream) and what a service already compressed pass
// as they are.
const minCompressed = 1024

// encoding returns the content coding to compress the answer resp to r
// with, "" for none, and whether the answer varies by Accept-Encoding at
// all (so that caches keep the codings apart).
func encoding(r *http.Request, resp *http.Response) (coding string, varies bool) {
	if r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified ||
		resp.StatusCode == http.StatusPartialContent || resp.Header.Get("Content-Encoding") != "" ||
		(resp.ContentLength >= 0 && resp.ContentLength < minCompressed) || !isJSONType(resp.Header.Get("Content-Type")) {
		return "", false
	}
	return accepted(r.Header.Values("Accept-Encoding")), true
}

func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// accepted picks zstd, else gzip, if the Accept-Encoding values allow it
// (RFC 9110 12.5.3: a coding with q=0 is refused; * stands for the others).
func accepted(values []string) string {
	q := map[string]float64{}
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(item, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			weight := 1.0
			if k, val, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					weight = f
				}
			}
			q[name] = weight
		}
	}
	for _, coding := range []string{"zstd", "gzip"} {
		w, listed := q[coding]
		if !listed {
			w, listed = q["*"]
		}
		if listed && w > 0 {
			return coding
		}
	}
	return ""
}

// compressor compresses into a client's response.
type compressor interface {
	io.Writer
	Close() error // finishes the stream; the writer goes back to its pool
}

var (
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.StatelessCompression)
		return w
	}}
	zstdWriters = sync.Pool{New: func() any {
		w, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<17), zstd.WithLowerEncoderMem(true), zstd.WithZeroFrames(true))
		return w
	}}
)

func newCompressor(coding string, w io.Writer) compressor {
	if coding == "zstd" {
		z := zstdWriters.Get().(*zstd.Encoder)
		z.Reset(w)
		return pooled{z, func() { zstdWriters.Put(z) }}
	}
	g := gzipWriters.Get().(*gzip.Writer)
	g.Reset(w)
	return pooled{g, func() { gzipWriters.Put(g) }}
}

type pooled struct {
	compressor
	put func()
}

func (p pooled) Close() error {
	err := p.compressor.Close()
	p.put()
	return err
}
