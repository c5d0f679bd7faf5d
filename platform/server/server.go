// Package server runs Souk's HTTP servers: timeouts and size limits on every
// connection, graceful shutdown, health endpoints, and a Router that gives
// every request an id, metrics, an access log line and problem+json errors.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Config bounds what one client can hold of a server.
type Config struct {
	ReadHeaderTimeout time.Duration // to read the request line and headers
	ReadTimeout       time.Duration // to read the whole request, body included
	WriteTimeout      time.Duration // from the end of the headers to the end of the response
	IdleTimeout       time.Duration // a keep-alive connection waits this long for the next request
	MaxHeaderBytes    int           // larger request headers get 431
	ShutdownTimeout   time.Duration // in-flight requests get this long to finish on shutdown
}

// DefaultConfig suits an API whose handlers answer in well under a second
// and whose upstream calls time out after 5 s.
func DefaultConfig() Config {
	return Config{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ShutdownTimeout:   15 * time.Second,
	}
}

// Server is an http.Server bound to a listener.
type Server struct {
	srv      *http.Server
	ln       net.Listener
	shutdown time.Duration
	scheme   string // http, or https from ListenTLS
}

// Listen binds addr (host:port; port 0 picks a free one) and returns a
// server for h that is not serving yet.
func Listen(addr string, h http.Handler, log *slog.Logger, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return newServer(problemListener{ln}, h, log, cfg), nil
}

func newServer(ln net.Listener, h http.Handler, log *slog.Logger, cfg Config) *Server {
	return &Server{
		ln:       ln,
		shutdown: cfg.ShutdownTimeout,
		scheme:   "http",
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
}

// Addr is the address the server listens on, with the real port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is http://Addr, or https://Addr for a server from ListenTLS.
func (s *Server) URL() string { return s.scheme + "://" + s.Addr() }

// Serve serves until Shutdown; it returns nil after a graceful shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting connections and waits, up to the configured
// shutdown timeout, for in-flight requests to finish; then it closes what is
// left.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdown)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("shutdown %s: %w", s.Addr(), err)
	}
	return nil
}
