package system

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/souk-shop/souk/internal/browsertest"
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
