package system

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/internal/browsertest"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/payments"
)

// TestStorefront is a customer in a real Chromium: finds a product by
// searching, signs up, orders it and sees the order confirmed without
// reloading the page; pays with a card that is declined and reads why;
// finds both in their orders; and meets errors in words, at phone width
// too. Every API answer the page gets is checked against openapi.yaml.
func TestStorefront(t *testing.T) {
	s := newShop(t, nil)
	s.product(4999, 10) // a product the search must leave out
	lamp := s.product(1500, 10)
	if r := call(t, "PATCH", s.gw+"/api/products/"+lamp, `{"name":"Brass Lamp","description":"Warm light"}`, s.admin...); r.status != 200 {
		t.Fatalf("name the lamp: %d %s", r.status, r.body)
	}
	b := browsertest.Start(t, 1100, 800)

	b.Do("open the shop", chromedp.Navigate(s.gw+"/"), chromedp.WaitVisible(chromedp.CSS(`.products a`)))
	b.Screenshot("storefront-home")
	b.Do("search", chromedp.SendKeys(chromedp.CSS(`#q`), "brass"), chromedp.Click(chromedp.CSS(`form[role=search] button`)))
	b.WaitText(`h1`, "brass", 5*time.Second)
	b.WaitText(`.products`, "Brass Lamp", 5*time.Second)
	found := browsertest.Eval[int](b, `document.querySelectorAll('.products li').length`)
	if found != 1 || b.Text(`.products li h2`) != "Brass Lamp" {
		t.Fatalf("searching brass found %d products, the first %q", found, b.Text(`.products li h2`))
	}

	b.Do("sign up", chromedp.Click(chromedp.Search(`//a[text()="Sign up"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#f-name`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "Ada Lovelace"),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), "ada@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "short"),
		chromedp.Click(chromedp.CSS(`main form button`)))
	// The users service refuses a short password: the page says so in
	// words, beside the field.
	if got := b.WaitText(`#f-password-err`, "10", 5*time.Second); got[0] == '{' {
		t.Fatalf("the error beside the password is %q", got)
	}
	b.Screenshot("storefront-signup-error")
	b.Do("sign up again", chromedp.SetValue(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`#account`, "Log out (Ada Lovelace)", 5*time.Second)

	// Order the lamp; the order page follows it live.
	b.Do("open the lamp", chromedp.Navigate(s.gw+"/#/product/"+lamp))
	b.WaitText(`#stock`, "10 in stock", 5*time.Second)
	b.Screenshot("storefront-product")
	b.Do("put two in the cart", chromedp.SetValue(chromedp.CSS(`#f-quantity`), "2"), chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`#cart-link`, "Cart (2)", 5*time.Second)
	b.Do("check out", chromedp.Click(chromedp.CSS(`#cart-link`)), chromedp.Click(chromedp.Search(`//a[text()="Check out"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#f-card`)))
	origin := browsertest.Eval[float64](b, `performance.timeOrigin`)
	b.Do("pay with a card", chromedp.SendKeys(chromedp.CSS(`#f-card`), "4242 4242 4242 4242"), chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`#order-status`, "Confirmed", 10*time.Second)
	if after := browsertest.Eval[float64](b, `performance.timeOrigin`); after != origin {
		t.Fatal("the page was reloaded to show the order's status")
	}
	b.Screenshot("storefront-order-confirmed")
	if steps := b.Text(`.steps`); len(steps) == 0 {
		t.Fatal("the confirmed order shows no steps")
	}
	if st := s.stock(lamp); st["sold"] != 2.0 {
		t.Fatalf("stock after the browser's order: %v", st)
	}

	// A declined card: the order is cancelled and the page says why.
	b.Do("order again", chromedp.Navigate(s.gw+"/#/product/"+lamp), chromedp.WaitVisible(chromedp.CSS(`#f-quantity`)),
		chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`#cart-link`, "Cart (1)", 5*time.Second)
	b.Do("open the checkout", chromedp.Navigate(s.gw+"/#/checkout"), chromedp.WaitVisible(chromedp.CSS(`input[name=method][value=""]`)))
	// What a keyboard and a screen reader need: every input labelled, the
	// focus on the new page's heading.
	unlabelled := browsertest.Eval[int](b, `[...document.querySelectorAll('input')].filter(i => !i.labels.length && !i.closest('label')).length`)
	if focused := browsertest.Eval[string](b, `document.activeElement.tagName`); unlabelled != 0 || focused != "H1" {
		t.Fatalf("%d inputs without a label; the focus is on %s, want the page's H1", unlabelled, focused)
	}
	b.Screenshot("storefront-checkout")
	b.Do("check out with a new card", chromedp.Click(chromedp.CSS(`input[name=method][value=""]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-card`), "1234"), chromedp.Click(chromedp.CSS(`main form button`)))
	if got := b.WaitText(`#f-card-err`, "", 5*time.Second); got == "" || got[0] == '{' {
		t.Fatalf("a wrong card number shows %q beside the field", got)
	}
	b.Do("a card that is declined", chromedp.SetValue(chromedp.CSS(`#f-card`), payments.DeclineCard), chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`#order-status`, "Cancelled", 10*time.Second)
	b.WaitText(`#order-reason`, "Your card was declined", time.Second)
	b.Screenshot("storefront-order-declined")

	b.Do("the order history", chromedp.Navigate(s.gw+"/#/orders"), chromedp.WaitVisible(chromedp.CSS(`main table`)))
	rows := browsertest.Eval[int](b, `document.querySelectorAll('main tbody tr').length`)
	if history := b.Text(`main tbody`); rows != 2 || !strings.Contains(history, "declined") {
		t.Fatalf("the history shows %d orders: %q", rows, history)
	}
	b.Screenshot("storefront-orders")

	// At phone width nothing is wider than the screen.
	b.Do("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(s.gw+"/#/orders"),
		chromedp.WaitVisible(chromedp.CSS(`main table`)))
	b.Screenshot("storefront-phone")
	if browsertest.Eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`) {
		t.Fatal("at 390 px the page scrolls sideways")
	}

	b.Do("log out", chromedp.Click(chromedp.Search(`//button[starts-with(text(), "Log out")]`)))
	b.WaitText(`#account`, "Log in", 5*time.Second)
}

// TestConsole is an admin in a real Chromium: logs in to the console
// (after a customer is refused), sees every service's instances, sees a
// second catalog instance join, its breaker open when it fails every request
// and close when it answers well again, and, stopped, leave; creates a product
// and sets its stock; finds a placed order and reads its saga as a
// timeline beside its trace; sees traffic and the events backlog;
// replays a dead letter; at phone width too. Every API answer the page
// gets is checked against openapi.yaml.
func TestConsole(t *testing.T) {
	dir := t.TempDir()
	sys := startSystem(t, dir, io.Discard, nil, func(c *Config) { c.Tracing.SampleRatio = 1 })
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	s := &shop{t: t, dir: dir, sys: sys, gw: gw, admin: bearer(login(t, gw, adminEmail, adminPassword))}
	lamp := s.product(1500, 10)
	cleo := s.customer("cleo")
	r := s.order(cleo, "console-1", lamp, 2, "4242 4242 4242 4242")
	if r.status != 201 {
		t.Fatalf("place an order: %d %s", r.status, r.body)
	}
	order := r.json(t)["id"].(string)
	if o := s.settled(cleo, order, 10*time.Second); o["status"] != "confirmed" {
		t.Fatalf("the order is %v", o["status"])
	}
	b := browsertest.Start(t, 1280, 900)

	b.Do("open the console", chromedp.Navigate(gw+"/console/"), chromedp.WaitVisible(chromedp.CSS(`#f-email`)))
	b.Do("log in as a customer", chromedp.SendKeys(chromedp.CSS(`#f-email`), "cleo@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"), chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`.form-error`, "admins only", 5*time.Second)
	b.Screenshot("console-login-refused")
	b.Do("log in as the admin", chromedp.SetValue(chromedp.CSS(`#f-email`), adminEmail),
		chromedp.SetValue(chromedp.CSS(`#f-password`), adminPassword), chromedp.Click(chromedp.CSS(`main form button`)))
	b.WaitText(`#live`, "Live", 10*time.Second)
	for _, name := range append(ServiceNames(), gateway.Name) {
		b.WaitText(`[data-service=`+name+`] tbody`, "Ready", 5*time.Second)
	}
	b.Screenshot("console-topology")
	if cell := browsertest.Eval[string](b, `document.querySelector('[data-service=gateway] tr[data-instance] td:last-child').textContent`); cell != "—" {
		t.Fatalf("the gateway's breaker cell says %q: the gateway keeps no breaker to itself", cell)
	}

	// Catalog and stock.
	b.Do("a new product", chromedp.Click(chromedp.Search(`//nav//a[text()="Catalog"]`)),
		chromedp.Click(chromedp.Search(`//a[text()="New product"]`)), chromedp.WaitVisible(chromedp.CSS(`#f-name`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "Copper Kettle"),
		chromedp.SendKeys(chromedp.CSS(`#f-description`), "Boils water"),
		chromedp.SendKeys(chromedp.CSS(`#f-price`), "24.5x"),
		chromedp.SendKeys(chromedp.CSS(`#f-available`), "7"),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	b.WaitText(`#f-price-err`, "price like", 5*time.Second)
	b.Do("correct the price", chromedp.SetValue(chromedp.CSS(`#f-price`), "24.50"),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	row := b.WaitText(`#products tbody`, "Copper Kettle", 5*time.Second)
	if !strings.Contains(row, "7") {
		t.Fatalf("the new product's row: %q", row)
	}
	b.Screenshot("console-catalog")
	kettle := browsertest.Eval[string](b, `document.querySelector('#products tr[data-product]').dataset.product`)
	p := call(t, "GET", gw+"/api/products/"+kettle, "").json(t)
	if price := p["price"].(map[string]any); p["name"] != "Copper Kettle" || price["amount"] != 2450.0 || price["currency"] != "EUR" {
		t.Fatalf("the product made in the console: %v", p)
	}
	b.Do("edit its stock", chromedp.Click(chromedp.Search(`//a[text()="Copper Kettle"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#f-available`)), chromedp.SetValue(chromedp.CSS(`#f-available`), "12"),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	b.WaitText(`#products tbody`, "12", 5*time.Second)
	if st := s.stock(kettle); st["available"] != 12.0 {
		t.Fatalf("the stock after editing it in the console: %v", st)
	}

	// The order: its saga beside its trace.
	b.Do("find the order", chromedp.Click(chromedp.Search(`//nav//a[text()="Orders"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#order-id`)), chromedp.SendKeys(chromedp.CSS(`#order-id`), order),
		chromedp.Click(chromedp.CSS(`form[role=search] button`)))
	steps := b.WaitText(`.timeline`, "OrderConfirmed", 5*time.Second)
	for _, want := range []string{"OrderPlaced", "by orders", "StockReserved", "by inventory", "PaymentAuthorized", "by payments", "step took"} {
		if !strings.Contains(steps, want) {
			t.Errorf("the saga's timeline does not say %q: %q", want, steps)
		}
	}
	b.WaitText(`#order-status`, "confirmed", time.Second)
	b.WaitText(`#trace`, "spans over", 5*time.Second)
	if bars := browsertest.Eval[int](b, `document.querySelectorAll('#trace .bar').length`); bars < 2 {
		t.Fatalf("the trace shows %d spans", bars)
	}
	b.Screenshot("console-order")

	b.Do("traffic", chromedp.Click(chromedp.Search(`//nav//a[text()="Traffic"]`)))
	b.WaitText(`#traffic`, "orders", 5*time.Second)
	if charts := browsertest.Eval[int](b, `document.querySelectorAll('#traffic svg[role=img][aria-label]').length`); charts != 3*(len(ServiceNames())+1) {
		t.Fatalf("%d charts on the traffic page", charts)
	}
	b.Screenshot("console-traffic")
	b.Do("events", chromedp.Click(chromedp.Search(`//nav//a[text()="Events"]`)))
	b.WaitText(`#backlog`, "orders", 5*time.Second)
	b.WaitText(`#dead-letters`, "No dead letters", 5*time.Second)

	// A malformed OrderPlaced, published as orders would: its consumer
	// dead-letters it at once. Replayed from the page, it leaves the dead
	// letters (and, still malformed, comes back as a new one).
	nc, err := broker.Connect(sys.NATSURL, "test-orders", sys.Credentials("orders"), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), saga.OrderPlaced, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	b.Do("refresh the dead letters", chromedp.Click(chromedp.Search(`//button[text()="Refresh the dead letters"]`)))
	for i := 0; i < 50 && !strings.Contains(b.Text(`#dead-letters`), "OrderPlaced"); i++ {
		time.Sleep(100 * time.Millisecond)
		b.Do("refresh the dead letters", chromedp.Click(chromedp.Search(`//button[text()="Refresh the dead letters"]`)))
	}
	letter := b.WaitText(`#dead-letters`, "OrderPlaced", 5*time.Second)
	if !strings.Contains(letter, "Why") || !strings.Contains(letter, "Replay") {
		t.Fatalf("the dead letter shown: %q", letter)
	}
	b.Screenshot("console-events")
	seq := browsertest.Eval[string](b, `document.querySelector('#dead-letters li[data-seq]').dataset.seq`)
	b.Do("replay it", chromedp.Click(chromedp.CSS(`#dead-letters li[data-seq="`+seq+`"] button`)))
	b.WaitText(`#status`, "replayed", 5*time.Second)
	if browsertest.Eval[int](b, `document.querySelectorAll('#dead-letters li[data-seq="`+seq+`"]').length`) != 0 {
		t.Fatalf("dead letter %s is still listed after its replay", seq)
	}
	if r := call(t, "GET", gw+"/api/admin/dead-letters", "", s.admin...); strings.Contains(string(r.body), `"seq":`+seq+`,`) {
		t.Fatalf("dead letter %s is still in the stream after its replay: %s", seq, r.body)
	}
	// The replay's message leaves with its page: a view opened later clears
	// it (well before it would hide by itself, 6 s after it was said).
	time.Sleep(300 * time.Millisecond)
	b.Do("to the traffic", chromedp.Click(chromedp.Search(`//nav//a[text()="Traffic"]`)))
	status := func() string { return browsertest.Eval[string](b, `document.getElementById('status').textContent`) }
	if !testenv.Eventually(2*time.Second, func() bool { return status() == "" }) {
		t.Fatalf("on the traffic page the replay's message stays: %q", status())
	}

	// What a keyboard and a screen reader need, and phone width.
	b.Do("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(gw+"/console/#/orders/"+order))
	b.WaitText(`.timeline`, "OrderConfirmed", 5*time.Second)
	b.WaitText(`#trace`, "spans", 5*time.Second)
	unlabelled := browsertest.Eval[int](b, `[...document.querySelectorAll('input, textarea')].filter(i => !i.labels.length).length`)
	if focused := browsertest.Eval[string](b, `document.activeElement.tagName`); unlabelled != 0 || focused != "H1" {
		t.Fatalf("%d inputs without a label; the focus is on %s, want the page's H1", unlabelled, focused)
	}
	for _, view := range []string{"orders/" + order, "topology", "traffic", "events", "catalog"} {
		b.Do("phone width: "+view, chromedp.Navigate(gw+"/console/#/"+view))
		b.WaitText(`main`, "", 5*time.Second)
		time.Sleep(300 * time.Millisecond) // the view's first answer
		if browsertest.Eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`) {
			b.Screenshot("console-phone-wide")
			t.Fatalf("at 390 px the console's %s scrolls sideways", view)
		}
		b.Screenshot("console-phone-" + strings.SplitN(view, "/", 2)[0])
	}
	// A second catalog instance joins the topology, and leaves it when
	// stopped, without the page being reloaded.
	// (Last, as its traffic pushes the order's trace out of the few kept.)
	b.Do("topology", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(gw+"/console/#/topology"))
	b.WaitText(`[data-service=catalog] tbody`, "Ready", 5*time.Second)
	origin := browsertest.Eval[float64](b, `performance.timeOrigin`)
	catalogs := func() int {
		return browsertest.Eval[int](b, `document.querySelectorAll('[data-service=catalog] tr[data-instance]').length`)
	}
	if n := catalogs(); n != 1 {
		t.Fatalf("%d catalog instances shown, want 1", n)
	}
	// The second catalog advertises a front that can fail every request
	// with a 500 of its own (a connection that fails would eject it from
	// the picks instead): the gateway's breaker to it opens, and closes
	// again once it answers well.
	var front struct {
		sync.Mutex
		proxy *httputil.ReverseProxy
		cut   bool
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		front.Lock()
		proxy, cut := front.proxy, front.cut
		front.Unlock()
		switch {
		case proxy == nil: // not started yet
			panic(http.ErrAbortHandler)
		case cut:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"failing on purpose"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	second := startSystem(t, t.TempDir(), io.Discard, nil, func(c *Config) {
		c.NATS, c.NATSListen, c.NATSCredentials, c.Gateway = sys.NATSURL, "", sys.Credentials, nil
		c.Instances = []Instance{{Service: "catalog", Addr: "127.0.0.1:0", Advertise: srv.URL, DB: dir + "/catalog.db"}}
	})
	target, err := url.Parse(second.URLs["catalog"])
	if err != nil {
		t.Fatal(err)
	}
	front.Lock()
	front.proxy = httputil.NewSingleHostReverseProxy(target)
	front.Unlock()
	b.WaitText(`[data-service=catalog] h2`, "2 instances", 10*time.Second)
	b.Screenshot("console-topology-two-catalogs")
	secondRow := `[data-service=catalog] tr[data-instance="` + browsertest.Eval[string](b,
		`[...document.querySelectorAll('[data-service=catalog] tr[data-instance]')].find(r => r.textContent.includes('`+strings.TrimPrefix(srv.URL, "http://")+`')).dataset.instance`) + `"]`
	// The page redraws the topology at every update: read the row afresh.
	rowText := func() string {
		return browsertest.Eval[string](b, `document.querySelector('`+secondRow+`')?.textContent ?? ''`)
	}
	browse := func(until string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(rowText(), until) {
			if time.Now().After(deadline) {
				t.Fatalf("the second catalog's row says %q, not %q", rowText(), until)
			}
			for range 10 { // answers 200, or the second catalog's 500
				if resp, err := http.Get(gw + "/api/products"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	front.Lock()
	front.cut = true
	front.Unlock()
	browse("Open")
	b.Screenshot("console-topology-breaker-open")
	front.Lock()
	front.cut = false
	front.Unlock()
	browse("Closed")
	if err := second.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.WaitText(`[data-service=catalog] h2`, "1 instance", 10*time.Second)
	if after := browsertest.Eval[float64](b, `performance.timeOrigin`); after != origin || catalogs() != 1 {
		t.Fatalf("after the stop: %d catalog instances; reloaded: %v", catalogs(), after != origin)
	}

	b.Do("log out", chromedp.Click(chromedp.Search(`//button[text()="Log out"]`)))
	b.WaitText(`h1`, "Log in", 5*time.Second)
}
