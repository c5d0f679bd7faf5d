package server

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/souk-shop/souk/platform/problem"
)

// net/http answers a request it cannot read (headers over MaxHeaderBytes:
// 431; a malformed request: 400; an unknown transfer coding: 501) by itself,
// before any handler runs: it writes a plain-text answer of a fixed form
// straight to the connection, in one Write, and closes it. problemListener's
// connections recognize that form and send the same status as problem+json,
// like every other error. A handler's answer never has that form: net/http
// writes a Date header after Content-Type and Connection in every answer it
// makes for a handler.

// cannedHeaders are the headers of net/http's own error answers.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

type problemListener struct{ net.Listener }

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c}, nil
}

type problemConn struct {
	net.Conn
	hsts string // Strict-Transport-Security for the answers, over TLS
}

func (c *problemConn) Write(p []byte) (int, error) {
	if status, detail, ok := parseCanned(p); ok {
		if _, err := c.Conn.Write(cannedProblem(status, detail, c.hsts)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close the connection after a 431, as it
// does on a bare TCP connection, so that the client reads the answer.
func (c *problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// parseCanned returns the status and the text of one of net/http's own
// error answers, "HTTP/1.1 431 Request Header Fields Too Large" +
// cannedHeaders + a text.
func parseCanned(p []byte) (status int, detail string, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !found || len(rest) < 4 || rest[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	line, body, found := bytes.Cut(rest, []byte(cannedHeaders))
	if !found || bytes.ContainsAny(line, "\r\n") {
		return 0, "", false
	}
	return status, string(body), true
}

func cannedProblem(status int, text, hsts string) []byte {
	// The text repeats the status line: "400 Bad Request: missing required
	// Host header". What follows the status is the detail.
	_, detail, _ := strings.Cut(text, ": ")
	code := problem.Invalid
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		code, detail = problem.HeadersTooLarge, "the request's headers are too large"
	case http.StatusNotImplemented:
		code, detail = problem.NotImplemented, "the request's transfer coding is not supported"
	}
	if detail == "" {
		detail = "the request is malformed"
	}
	return problemAnswer(status, code, detail, hsts)
}

// problemAnswer is a whole HTTP/1.1 answer, problem+json, that closes the
// connection; with Strict-Transport-Security if hsts is not empty.
func problemAnswer(status int, code problem.Code, detail, hsts string) []byte {
	body, _ := json.Marshal(problem.Body{
		Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Code: code,
	})
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/problem+json\r\nX-Content-Type-Options: nosniff\r\n")
	if hsts != "" {
		b.WriteString("Strict-Transport-Security: " + hsts + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)+1) + "\r\nConnection: close\r\n\r\n")
	b.Write(body)
	b.WriteByte('\n')
	return b.Bytes()
}
