// Command firstload measures the first load of the storefront's home and
// of the console in a real Chromium (Debian's /usr/bin/chromium, headless)
// on loopback: the bytes sent over the wire and after decoding, by kind
// (HTML, JS, CSS, API answers), and the time from navigation to the first
// contentful paint and to the first useful thing shown: a product on the
// home, the login form on the console.
//
//	go run ./bench/firstload            # 10 cold and 10 warm loads of each
//
// It starts Souk in this process (embedded NATS, SQLite, in a temporary
// directory) with 20 products. Each cold load is in a new browser context,
// with nothing cached; each warm load navigates to the page again in the
// same context, as a returning visitor would. Times are medians and the
// slowest of the runs; bytes are the same in every run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/souk-shop/souk/internal/browsertest"
	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
)

const (
	adminEmail    = "admin@firstload.test"
	adminPassword = "first load admin password"
)

func main() {
	runs := flag.Int("runs", 10, "cold and warm loads of each page")
	products := flag.Int("products", 20, "products in the shop (the home shows the first page of them)")
	flag.Parse()
	if err := run(*runs, *products); err != nil {
		fmt.Fprintln(os.Stderr, "firstload:", err)
		os.Exit(1)
	}
}

// target is a page to measure: where it is, and what it shows when it is
// of use.
type target struct {
	name, path, shown string // shown: a CSS selector
}

var targets = []target{
	{"storefront home", "/", ".products a"},
	{"console", "/console/", "#f-email"},
}

// load is what one load of a page measured, read from the page's
// Performance API.
type load struct {
	Shown    float64            `json:"shown"` // ms from navigation start
	FCP      float64            `json:"fcp"`
	Sent     float64            `json:"sent"` // bytes on the wire, headers included
	Decoded  float64            `json:"decoded"`
	Requests int                `json:"requests"`
	By       map[string]float64 `json:"by"` // bytes on the wire by kind
}

// observe runs in every new document before its own scripts: it notes in
// window.__shown when the selector (%q) first matches.
const observe = `(() => {
  const sel = %q;
  const seen = () => { if (window.__shown === undefined && document.querySelector(sel)) { window.__shown = performance.now(); return true; } return false; };
  new MutationObserver((_, o) => { if (seen()) o.disconnect(); }).observe(document, { childList: true, subtree: true });
})()`

// measure reads the load from the Performance API once the page has shown
// its useful part and settled.
const measure = `(() => {
  const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
  const kind = (e) => e.entryType === 'navigation' ? 'html' : new URL(e.name).pathname.startsWith('/api/') ? 'api'
    : e.name.endsWith('.js') ? 'js' : e.name.endsWith('.css') ? 'css' : 'other';
  const by = {};
  for (const e of entries) by[kind(e)] = (by[kind(e)] || 0) + e.transferSize;
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return { shown: window.__shown, fcp: fcp ? fcp.startTime : 0, requests: entries.length, by,
    sent: entries.reduce((n, e) => n + e.transferSize, 0), decoded: entries.reduce((n, e) => n + e.decodedBodySize, 0) };
})()`

func run(runs, products int) error {
	dir, err := os.MkdirTemp("", "souk-firstload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gw, stop, err := startSouk(dir)
	if err != nil {
		return err
	}
	defer stop()
	if err := stock(gw, products); err != nil {
		return err
	}

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), browsertest.Options(1280, 900, filepath.Join(dir, "chromium"))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if _, err := chromedp.Run(browser, chromedp.Navigate("about:blank")); err != nil {
		return fmt.Errorf("start %s: %w", browsertest.Chromium, err)
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "page\tload\trequests\tsent KB\tdecoded KB\thtml\tjs\tcss\tapi\tFCP ms (median, max)\tshown ms (median, max)\t\n")
	for _, tg := range targets {
		var cold, warm []load
		for range runs {
			c, wm, err := loadTwice(browser, gw+tg.path, tg.shown)
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			cold, warm = append(cold, c), append(warm, wm)
		}
		for _, r := range []struct {
			name  string
			loads []load
		}{{"cold", cold}, {"warm", warm}} {
			l := r.loads[0]
			kb := func(n float64) string { return fmt.Sprintf("%.1f", n/1000) }
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", tg.name, r.name, l.Requests, kb(l.Sent), kb(l.Decoded),
				kb(l.By["html"]), kb(l.By["js"]), kb(l.By["css"]), kb(l.By["api"]),
				spread(r.loads, func(l load) float64 { return l.FCP }), spread(r.loads, func(l load) float64 { return l.Shown }))
		}
	}
	return w.Flush()
}

// loadTwice loads url in a new browser context (nothing cached), then
// again in the same one.
func loadTwice(browser context.Context, url, shown string) (cold, warm load, err error) {
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancel()
	ctx, cancelTime := context.WithTimeout(ctx, 30*time.Second)
	defer cancelTime()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: fmt.Sprintf(observe, shown)}); err != nil {
		return load{}, load{}, err
	}
	once := func() (load, error) {
		if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
			return load{}, err
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.__shown !== undefined`)); err != nil {
			return load{}, fmt.Errorf("waiting for %s: %w", shown, err)
		}
		time.Sleep(300 * time.Millisecond) // for the paint entries and late requests
		return chromedp.Run(ctx, chromedp.Evaluate[load](measure))
	}
	if cold, err = once(); err != nil {
		return cold, warm, err
	}
	warm, err = once()
	return cold, warm, err
}

// spread is the median and the largest of f over loads.
func spread(loads []load, f func(load) float64) string {
	v := make([]float64, len(loads))
	for i, l := range loads {
		v[i] = f(l)
	}
	slices.Sort(v)
	return fmt.Sprintf("%.0f, %.0f", v[len(v)/2], v[len(v)-1])
}

// startSouk starts every service and the gateway in this process.
func startSouk(dir string) (gateway string, stop func(), err error) {
	cfg := system.Config{
		NATSListen: "127.0.0.1:0", DataDir: dir, Server: server.DefaultConfig(),
		Gateway: &system.GatewayConfig{Addr: "127.0.0.1:0"},
	}
	cfg.Services.Users.AdminEmail, cfg.Services.Users.AdminPassword = adminEmail, adminPassword
	if cfg.Gateway.Config, err = system.LoadGatewayConfig("", 0, nil); err != nil {
		return "", nil, err
	}
	if cfg.Keyring, err = secrets.Ensure(filepath.Join(dir, "keyring")); err != nil {
		return "", nil, err
	}
	for _, name := range system.ServiceNames() {
		cfg.Instances = append(cfg.Instances, system.Instance{Service: name, Addr: "127.0.0.1:0", DB: filepath.Join(dir, name+".db")})
	}
	sys, err := system.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return "", nil, err
	}
	return sys.URLs[system.GatewayName], func() { _ = sys.Shutdown(context.Background()) }, nil
}

// stock creates n products with stock, as the admin.
func stock(gw string, n int) error {
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := call(gw, "POST", "/api/auth/login", "", map[string]string{"email": adminEmail, "password": adminPassword}, 200, &tok); err != nil {
		return err
	}
	for i := range n {
		var p struct {
			ID string `json:"id"`
		}
		body := map[string]any{"name": fmt.Sprintf("Thing %d", i+1), "description": "A thing to measure the first load with",
			"price": map[string]any{"amount": 500 + 100*i, "currency": "EUR"}}
		if err := call(gw, "POST", "/api/products", tok.AccessToken, body, 201, &p); err != nil {
			return err
		}
		if err := call(gw, "PUT", "/api/inventory/"+p.ID, tok.AccessToken, map[string]int{"available": 10}, 200, nil); err != nil {
			return err
		}
	}
	return nil
}

func call(gw, method, path, token string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, gw+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, got)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(got, out)
}
