package discovery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestHTTP1 checks that HTTP1 carries what net/http's Transport would:
// the request as written, headers both ways, bodies of known and unknown
// length both ways, and no header of its own.
func TestHTTP1(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				t.Errorf("server reading body: %v", err)
			}
			w.Header()["Set-Cookie"] = []string{"a=1", "b=2"}
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Uri", r.RequestURI)
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-Length", func() string {
				if r.ContentLength < 0 {
					return "chunked"
				}
				return "known"
			}())
			w.Header()["X-Got"] = r.Header.Values("X-Multi")
			w.Header().Set("X-User-Agent", r.Header.Get("User-Agent"))
			w.Header().Set("X-Content-Type", r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(body)
		case "/big":
			w.(http.Flusher).Flush() // no Content-Length: chunked
			_, _ = w.Write(big)
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	tr := NewHTTP1()
	do := func(t *testing.T, req *http.Request) (*http.Response, []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := tr.RoundTrip(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	t.Run("known length", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+"/echo?q=a%20b&x=%2F", strings.NewReader(`{"a":1}`))
		req.Header.Add("X-Multi", "one")
		req.Header.Add("X-Multi", "two")
		req.Host = "users"
		resp, body := do(t, req)
		want := map[string]string{"X-Method": "POST", "X-Uri": "/echo?q=a%20b&x=%2F", "X-Host": "users", "X-Length": "known",
			"X-User-Agent": "", "X-Content-Type": ""}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if resp.StatusCode != http.StatusCreated || resp.Status != "201 Created" || string(body) != `{"a":1}` {
			t.Errorf("got %q %q", resp.Status, body)
		}
		if got := resp.Header.Values("X-Got"); strings.Join(got, ",") != "one,two" {
			t.Errorf("multi-valued request header arrived as %q", got)
		}
		if got := resp.Header.Values("Set-Cookie"); strings.Join(got, ",") != "a=1,b=2" {
			t.Errorf("Set-Cookie = %q", got)
		}
		if resp.ContentLength != 7 {
			t.Errorf("ContentLength = %d, want 7", resp.ContentLength)
		}
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		// curl asks first for large bodies; the server's interim 100 must
		// not be taken for the answer.
		req, _ := http.NewRequest("POST", srv.URL+"/echo", strings.NewReader("asked first"))
		req.Header.Set("Expect", "100-continue")
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusCreated || string(body) != "asked first" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("header names of any case", func(t *testing.T) {
		// A server other than Go's may send lower-case names; callers look
		// them up, and the proxy removes hop-by-hop ones, by canonical name.
		// Connection stays, as net/http's Transport leaves it: the proxy
		// removes the headers it names.
		addr := rawServer(t, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nlocation: /x\r\nkeep-alive: timeout=5\r\nconnection: x-private\r\n\r\nok")
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Location") != "/x" || resp.Header.Get("Keep-Alive") != "timeout=5" || resp.Header.Get("Connection") != "x-private" {
			t.Errorf("headers %v", resp.Header)
		}
	})
	t.Run("unknown length", func(t *testing.T) {
		// A reader that hands out one byte at a time, and no length:
		// fasthttp must send it chunked, as net/http would.
		req, _ := http.NewRequest("PUT", srv.URL+"/echo", io.NopCloser(iotest.OneByteReader(strings.NewReader("streamed"))))
		resp, body := do(t, req)
		if resp.Header.Get("X-Length") != "chunked" || string(body) != "streamed" {
			t.Errorf("got %s %q", resp.Header.Get("X-Length"), body)
		}
	})
	t.Run("streamed response", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
		resp, body := do(t, req)
		if !bytes.Equal(body, big) || resp.ContentLength != -1 {
			t.Errorf("got %d bytes (ContentLength %d), want %d", len(body), resp.ContentLength, len(big))
		}
	})
	t.Run("no body", func(t *testing.T) {
		req, _ := http.NewRequest("DELETE", srv.URL+"/empty", nil)
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 || resp.Header.Get("Content-Type") != "" {
			t.Errorf("got %d %q, Content-Type %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("body closed early", func(t *testing.T) {
		// The connection goes with the unread body, and the next request
		// on a fresh one gets its own answer.
		req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp.Body.Close() // twice is harmless
		req, _ = http.NewRequest("POST", srv.URL+"/echo", strings.NewReader("after"))
		if _, body := do(t, req); string(body) != "after" {
			t.Errorf("next answer %q", body)
		}
	})
}

// TestHTTP1Failures checks that every way a call can fail ends in an error
// the layers above know, in bounded time.
func TestHTTP1Failures(t *testing.T) {
	tr := NewHTTP1()
	hang := make(chan struct{})
	defer close(hang)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "10")
			_, _ = w.Write([]byte("12345"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()

	t.Run("no answer in time", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", slow.URL+"/", nil)
		start := time.Now()
		_, err := tr.RoundTrip(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s", d)
		}
	})
	t.Run("body stalls", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", slow.URL+"/slow-body", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("a body cut short by the deadline read without error")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s", d)
		}
	})
	t.Run("canceled before sending", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", slow.URL+"/", nil)
		if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want Canceled", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		_, err = tr.RoundTrip(req)
		if !refused(err) {
			t.Errorf("err = %v: not seen as refused, so the instance would not be ejected", err)
		}
	})
	t.Run("kept-alive connection closed by the server", func(t *testing.T) {
		// The server closes each connection after answering, without
		// saying so: the next GET finds a dead pooled connection and is
		// sent again on a new one, as net/http's Transport does.
		addr := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		for i := range 3 {
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "ok" {
				t.Fatalf("request %d: %q", i, body)
			}
			time.Sleep(20 * time.Millisecond) // the close reaches the client
		}
	})
}

// rawServer answers each connection's first read with answer, then closes
// the connection without saying so; it returns its address.
func rawServer(t *testing.T, answer string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := c.Read(make([]byte, 4096)); err != nil {
					return
				}
				_, _ = c.Write([]byte(answer))
			}()
		}
	}()
	return ln.Addr().String()
}
