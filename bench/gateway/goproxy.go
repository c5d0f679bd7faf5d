package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The go-httputil target: the least a Go reverse proxy does, as the issue
// describes one (httputil.ReverseProxy with a tuned Transport and a
// BufferPool), round robin over the backends. Beside souk it tells what Go's
// runtime and net/http cost on this machine from what the gateway adds.
const (
	proxyEnv    = "SOUK_BENCH_PROXY"     // the address to serve on
	proxyUpsEnv = "SOUK_BENCH_UPSTREAMS" // the backends, comma-separated
)

// startGoProxy runs this program as the go-httputil proxy on port.
func startGoProxy(port int, backends []string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return pinned([]string{"GOMAXPROCS=1", fmt.Sprintf("%s=127.0.0.1:%d", proxyEnv, port), proxyUpsEnv + "=" + strings.Join(backends, ",")}, self)
}

// serveGoProxy runs the go-httputil proxy until the process is stopped.
func serveGoProxy() error {
	backends := strings.Split(os.Getenv(proxyUpsEnv), ",")
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = backends[next.Add(1)%uint64(len(backends))]
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/api")
			pr.Out.URL.RawPath = ""
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
		},
		BufferPool: goProxyBuffers{},
	}
	srv := &http.Server{Addr: os.Getenv(proxyEnv), Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

type goProxyBuffers struct{}

var goProxyPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (goProxyBuffers) Get() []byte  { return *goProxyPool.Get().(*[]byte) }
func (goProxyBuffers) Put(b []byte) { goProxyPool.Put(&b) }
