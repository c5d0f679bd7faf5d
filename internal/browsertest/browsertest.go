// Package browsertest drives a real Chromium (Debian's /usr/bin/chromium,
// headless) from tests with chromedp, keeps a screenshot of each page a
// test names, and checks every answer the pages get from the API against
// openapi.yaml, as the Go tests' own requests are.
package browsertest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/souk-shop/souk/internal/openapitest"
)

// Chromium is the browser the tests drive: Debian's package (.ci/run
// installs it).
const Chromium = "/usr/bin/chromium"

// ScreenshotsEnv names a directory to keep the screenshots in; without
// it they go to a directory under the test's temporary one.
const ScreenshotsEnv = "SOUK_SCREENSHOTS"

// Browser is one headless Chromium with one tab.
type Browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string // where screenshots go
	mu   sync.Mutex
	reqs map[network.RequestID]*exchange
	errs []string
	wg   sync.WaitGroup
}

// exchange is one API request the page made, as the browser saw it.
type exchange struct {
	req  *network.Request
	resp *network.Response
}

// Options start Debian's Chromium headless, in a window of width×height,
// with its profile in userDataDir and nothing running in the background
// (no updates, sync or extensions), for chromedp.NewExecAllocator.
func Options(width, height int, userDataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(userDataDir),
	}
}

// Start launches Chromium for the test, or skips the test, saying why,
// when it is not installed. The browser ends with the test; by then every
// API answer it got has been checked against openapi.yaml.
func Start(t *testing.T, width, height int) *Browser {
	t.Helper()
	if _, err := exec.LookPath(Chromium); err != nil {
		t.Skipf("no Chromium at %s (apt-get install chromium): the browser tests need it", Chromium)
	}
	dir := os.Getenv(ScreenshotsEnv)
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), Options(width, height, t.TempDir())...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{t: t, ctx: ctx, dir: dir, reqs: map[network.RequestID]*exchange{}}
	if err := chromedp.Listen(ctx, b.onEvent); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", Chromium, err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("%s: enable the network events: %v", Chromium, err)
	}
	t.Cleanup(func() {
		b.wg.Wait()
		cancel()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errs {
			t.Error(e)
		}
		t.Logf("screenshots in %s", dir)
	})
	return b
}

// onEvent follows the page's API requests; once an answer has arrived
// whole, its body is fetched and the exchange checked, off the event
// loop (a listener must not block it).
func (b *Browser) onEvent(ev any) {
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if u, err := url.Parse(ev.Request.URL); err == nil && strings.HasPrefix(u.Path, "/api/") {
			b.mu.Lock()
			b.reqs[ev.RequestID] = &exchange{req: ev.Request}
			b.mu.Unlock()
		}
	case *network.EventResponseReceived:
		b.mu.Lock()
		if x := b.reqs[ev.RequestID]; x != nil {
			x.resp = ev.Response
		}
		b.mu.Unlock()
	case *network.EventLoadingFinished:
		b.mu.Lock()
		x := b.reqs[ev.RequestID]
		delete(b.reqs, ev.RequestID)
		b.mu.Unlock()
		if x == nil || x.resp == nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.check(ev.RequestID, x)
		}()
	}
}

// check validates one exchange against openapi.yaml. The browser has
// undone any content coding by then.
func (b *Browser) check(id network.RequestID, x *exchange) {
	var body []byte
	if strings.HasPrefix(x.resp.MimeType, "text/event-stream") {
		return // the browser keeps no stream's body; the Go tests check streams
	}
	got, err := chromedp.Call(b.ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
	if err != nil {
		return // the page went on and the body is gone: nothing to check
	}
	body = got.Body
	req, err := http.NewRequest(x.req.Method, x.req.URL, nil)
	if err != nil {
		return
	}
	for k, v := range x.req.Headers {
		req.Header.Set(k, fmt.Sprint(v))
	}
	var reqBody []byte
	for _, e := range x.req.PostDataEntries {
		reqBody = append(reqBody, e.Bytes...)
	}
	resp := &http.Response{StatusCode: int(x.resp.Status), Status: fmt.Sprintf("%d %s", x.resp.Status, x.resp.StatusText), Header: http.Header{}}
	for k, v := range x.resp.Headers {
		if !strings.EqualFold(k, "Content-Encoding") { // the browser decoded the body
			resp.Header.Set(k, fmt.Sprint(v))
		}
	}
	spec, err := openapitest.Load()
	if err != nil {
		b.fail("%v", err)
		return
	}
	if err := spec.Check(req, reqBody, resp, body); err != nil {
		b.fail("from the browser: %v", err)
	}
}

func (b *Browser) fail(format string, args ...any) {
	b.mu.Lock()
	b.errs = append(b.errs, fmt.Sprintf(format, args...))
	b.mu.Unlock()
}

// Do runs chromedp actions with a deadline, failing the test, with a
// screenshot, if one fails.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shoot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Eval returns the value of a JavaScript expression in the page.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Text returns the text of the first element the CSS selector sel
// matches, waiting for it to be visible.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.shoot("failed-read")
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// WaitText waits until the element the CSS selector sel matches contains
// want (any text at all if want is empty), and returns its text.
func (b *Browser) WaitText(sel, want string, within time.Duration) string {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+strconv.Quote(sel)+`) || {}).innerText || ""`))
		cancel()
		if err == nil && strings.Contains(s, want) && (want != "" || s != "") {
			return s
		}
		if time.Now().After(deadline) {
			b.shoot("failed-waiting")
			b.t.Fatalf("waited %s for %q in %s; it says %q (%v)", within, want, sel, s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Screenshot keeps a PNG of the page's viewport as <name>.png, and fails
// the test if the page shows what a person should never read: null,
// undefined, an object or raw JSON.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	cancel()
	if err == nil && !strings.HasPrefix(name, "failed") {
		for _, junk := range []string{"null", "undefined", "[object ", "NaN", `{"`} {
			if strings.Contains(text, junk) {
				b.t.Errorf("page %s shows %q: %q", name, junk, text)
			}
		}
	}
	return b.shoot(name)
}

// shoot keeps a PNG of the page's viewport as <name>.png.
func (b *Browser) shoot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}
