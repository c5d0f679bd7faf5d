package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Test cards of Souk's simulated payment provider.
const (
	PayCard     = "4242424242424242"
	DeclineCard = "4000000000000002" // always declined: the order is cancelled, as it should be
)

// words name the products the run creates, and are what search asks for.
var words = []string{"lamp", "kettle", "rug", "mirror", "chair", "vase", "clock", "basket", "teapot", "lantern"}

// product is one the run orders.
type product struct {
	id   string
	name string
}

// shop is what the operations share: the gateway, the products and a way
// to record.
type shop struct {
	cfg      Config
	base     string
	rec      *recorder
	products []product
	runID    string

	signups sync.Mutex
	nsignup int

	follows sync.WaitGroup
	failed  []failedOrder // placements that got an error
	fmu     sync.Mutex
}

// failedOrder is a placement that got an error, to send again after the
// run.
type failedOrder struct {
	c    *client
	key  string
	body orderRequest
}

type orderRequest struct {
	Items         []orderItem `json:"items"`
	PaymentMethod string      `json:"payment_method"`
}

type orderItem struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

type orderState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// do runs one operation of the mix for c, meant to start at intended.
func (s *shop) do(ctx context.Context, op string, c *client, r *rand.Rand, intended time.Time, seq int) {
	switch op {
	case OpBrowse:
		s.browse(ctx, c, intended)
	case OpSearch:
		q := url.Values{"q": {words[r.IntN(len(words))]}, "limit": {"20"}}
		a := s.get(ctx, c, "/api/products?"+q.Encode())
		s.done(op, intended, a, 200)
	case OpView:
		p := s.products[r.IntN(len(s.products))]
		a := s.get(ctx, c, "/api/products/"+p.id)
		if a.failure(200) == "" {
			a = s.get(ctx, c, "/api/inventory/"+p.id)
		}
		s.done(op, intended, a, 200)
	case OpSignup:
		s.signups.Lock()
		s.nsignup++
		n := s.nsignup
		s.signups.Unlock()
		body := map[string]string{"name": "Load Shopper", "email": fmt.Sprintf("signup-%s-%d@load.souk.test", s.runID, n), "password": "load shopper password"}
		a := send(ctx, c.http, "POST", s.base+"/api/auth/register", "", body, s.cfg.Timeout)
		s.done(op, intended, a, 201)
	case OpLogin:
		a := send(ctx, c.http, "POST", s.base+"/api/auth/login", "", map[string]string{"email": c.email, "password": c.password}, s.cfg.Timeout)
		s.done(op, intended, a, 200)
		var tok tokens
		if a.failure(200) == "" && a.decode(&tok) == nil && tok.AccessToken != "" {
			c.setTokens(tok)
		}
	case OpOrder:
		s.order(ctx, c, r, intended, seq)
	}
}

func (s *shop) get(ctx context.Context, c *client, path string) answer {
	return send(ctx, c.http, "GET", s.base+path, s.bearer(ctx, c), nil, s.cfg.Timeout)
}

// renewAfter is how old a client's access token may get before its next
// operation exchanges the refresh token for new ones: a minute before it
// expires (tokens live 5 minutes).
const renewAfter = 4 * time.Minute

// bearer returns c's access token, renewed first if it is about to expire:
// runs last longer than a token. The exchange is upkeep, not an operation
// of the mix, and is not measured; if it fails the old token serves until
// the next operation tries again, and if the session has ended (401), c
// logs in again.
func (s *shop) bearer(ctx context.Context, c *client) string {
	if _, at := c.current(); time.Since(at) < renewAfter {
		return c.bearer()
	}
	c.renew.Lock()
	defer c.renew.Unlock()
	old, at := c.current()
	if time.Since(at) < renewAfter {
		return old.AccessToken // another operation renewed them meanwhile
	}
	a := send(ctx, c.http, "POST", s.base+"/api/auth/refresh", "", map[string]string{"refresh_token": old.RefreshToken}, s.cfg.Timeout)
	if a.status == 401 {
		a = send(ctx, c.http, "POST", s.base+"/api/auth/login", "", map[string]string{"email": c.email, "password": c.password}, s.cfg.Timeout)
	}
	var tok tokens
	if a.failure(200) == "" && a.decode(&tok) == nil && tok.AccessToken != "" {
		c.setTokens(tok)
		return tok.AccessToken
	}
	return old.AccessToken
}

// done records a, an operation's last answer, against op.
func (s *shop) done(op string, intended time.Time, a answer, ok ...int) {
	failure := a.failure(ok...)
	if failure == "cancelled" {
		return // the run was interrupted: not the system's doing
	}
	s.rec.record(op, intended, time.Since(intended), failure)
	if a.ratelimit != "" {
		s.rec.headroom(op, a.ratelimit)
	}
}

// browse reads the client's next page of products, from the first again
// after the last.
func (s *shop) browse(ctx context.Context, c *client, intended time.Time) {
	c.mu.Lock()
	q := url.Values{"limit": {"20"}}
	if c.cursor != "" {
		q.Set("cursor", c.cursor)
	}
	c.mu.Unlock()
	a := s.get(ctx, c, "/api/products?"+q.Encode())
	s.done(OpBrowse, intended, a, 200)
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	if a.failure(200) == "" && a.decode(&page) == nil {
		c.mu.Lock()
		c.cursor = page.NextCursor
		c.mu.Unlock()
	}
}

// order places an order of one to three products with an Idempotency-Key,
// paying with the declining card for a share of them, and follows it to
// its end in the background.
func (s *shop) order(ctx context.Context, c *client, r *rand.Rand, intended time.Time, seq int) {
	req := orderRequest{PaymentMethod: c.pay}
	if r.Float64() < s.cfg.DeclineShare {
		req.PaymentMethod = c.decline
	}
	for _, i := range r.Perm(len(s.products))[:1+r.IntN(min(3, len(s.products)))] {
		req.Items = append(req.Items, orderItem{ProductID: s.products[i].id, Quantity: 1 + r.IntN(2)})
	}
	key := fmt.Sprintf("load-%s-%d", s.runID, seq)
	a := send(ctx, c.http, "POST", s.base+"/api/orders", s.bearer(ctx, c), req, s.cfg.Timeout, "Idempotency-Key", key)
	// 200 is the order this key placed: a gateway that sent the request
	// twice (it may, with a key) got it placed once.
	s.done(OpOrder, intended, a, 201, 200)
	switch {
	case a.failure(201, 200) == "":
		var o orderState
		if err := a.decode(&o); err != nil || o.ID == "" {
			s.rec.order("open", "")
			return
		}
		s.rec.addOrders(func(o *Orders) { o.Placed++ })
		s.follow(ctx, c, o.ID)
	case a.err != nil || a.status >= 500:
		// It may have been placed all the same: asked again after the run.
		s.fmu.Lock()
		s.failed = append(s.failed, failedOrder{c: c, key: key, body: req})
		s.fmu.Unlock()
	}
}

// follow polls the order until it is confirmed or cancelled, at growing
// intervals (50 ms doubling to 5 s, as a page that refreshes itself
// would; a saga that lags must not be buried in polls), for at most
// cfg.Follow; every poll is
// a request of the report's follow operation.
func (s *shop) follow(ctx context.Context, c *client, id string) {
	s.follows.Go(func() {
		end := time.Now().Add(s.cfg.Follow)
		wait := 50 * time.Millisecond
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				s.rec.order("open", "")
				return
			case <-t.C:
			}
			start := time.Now()
			a := s.get(ctx, c, "/api/orders/"+id)
			s.done(OpFollow, start, a, 200)
			var o orderState
			if a.failure(200) == "" && a.decode(&o) == nil && (o.Status == "confirmed" || o.Status == "cancelled") {
				s.rec.order(o.Status, o.Reason)
				return
			}
			if time.Now().After(end) {
				s.rec.order("open", "")
				return
			}
			wait = min(2*wait, 5*time.Second)
		}
	})
}

// recheck sends each failed placement again, once, with its key: 200
// says the first had got through, 201 that it had not (the order is
// placed now and followed like the others).
func (s *shop) recheck(ctx context.Context) {
	s.fmu.Lock()
	failed := s.failed
	s.fmu.Unlock()
	s.rec.addOrders(func(o *Orders) { o.Failed = int64(len(failed)) })
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, f := range failed {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a := send(ctx, f.c.http, "POST", s.base+"/api/orders", s.bearer(ctx, f.c), f.body, s.cfg.Timeout, "Idempotency-Key", f.key)
			var o orderState
			ok := a.decode(&o) == nil && o.ID != ""
			switch {
			case a.status == 200 && ok:
				s.rec.addOrders(func(o *Orders) { o.GotThrough++; o.Placed++ })
				s.follow(ctx, f.c, o.ID)
			case a.status == 201 && ok:
				s.rec.addOrders(func(o *Orders) { o.NotThrough++; o.Placed++ })
				s.follow(ctx, f.c, o.ID)
			default:
				s.rec.addOrders(func(o *Orders) { o.Unknown++ })
			}
		})
	}
	wg.Wait()
}

// setupAdmin logs the admin in, creates cfg.Products products and stocks
// them; with cfg.Existing it lists the products already there instead.
func (s *shop) setup(ctx context.Context, hc func() *client) error {
	c := hc()
	if s.cfg.Existing {
		cursor := ""
		for len(s.products) < 1000 {
			q := url.Values{"limit": {"100"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Items []struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				} `json:"items"`
				NextCursor string `json:"next_cursor"`
			}
			if err := retry(ctx, func() error {
				a := send(ctx, c.http, "GET", s.base+"/api/products?"+q.Encode(), "", nil, s.cfg.Timeout)
				if a.failure(200) != "" {
					return fmt.Errorf("list products: %s", a)
				}
				return a.decode(&page)
			}); err != nil {
				return err
			}
			for _, p := range page.Items {
				s.products = append(s.products, product{id: p.ID, name: p.Name})
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if len(s.products) == 0 {
			return errors.New("--existing: the shop has no products")
		}
		return nil
	}
	if s.cfg.AdminPassword == "" {
		return errors.New("setting up products needs the admin's password (--admin-password; souk up prints it at first start), or --existing to use the products there are")
	}
	var admin string
	if err := retry(ctx, func() error {
		a := send(ctx, c.http, "POST", s.base+"/api/auth/login", "", map[string]string{"email": s.cfg.AdminEmail, "password": s.cfg.AdminPassword}, s.cfg.Timeout)
		if a.status == 401 {
			return permanent{fmt.Errorf("admin login as %s: %s", s.cfg.AdminEmail, a)}
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if a.failure(200) != "" || a.decode(&tok) != nil {
			return fmt.Errorf("admin login: %s", a)
		}
		admin = tok.AccessToken
		return nil
	}); err != nil {
		return err
	}
	for i := range s.cfg.Products {
		name := fmt.Sprintf("%s %s %d", strings.ToUpper(words[i%len(words)][:1])+words[i%len(words)][1:], s.runID, i)
		var p struct {
			ID string `json:"id"`
		}
		body := map[string]any{"name": name, "description": "made by souk load", "price": map[string]any{"amount": 500 + 250*(i%20), "currency": "EUR"}}
		if err := retry(ctx, func() error {
			a := send(ctx, c.http, "POST", s.base+"/api/products", admin, body, s.cfg.Timeout)
			if a.failure(201) != "" {
				return fmt.Errorf("create a product: %s", a)
			}
			return a.decode(&p)
		}); err != nil {
			return err
		}
		if err := retry(ctx, func() error {
			a := send(ctx, c.http, "PUT", s.base+"/api/inventory/"+p.ID, admin, map[string]int{"available": s.cfg.Stock}, s.cfg.Timeout)
			if a.failure(200) != "" {
				return fmt.Errorf("stock a product: %s", a)
			}
			return nil
		}); err != nil {
			return err
		}
		s.products = append(s.products, product{id: p.ID, name: name})
	}
	return nil
}

// account signs c up, logs it in and gives payments its cards.
func (s *shop) account(ctx context.Context, c *client) error {
	if err := s.signIn(ctx, c); err != nil {
		return err
	}
	for _, m := range []struct {
		card  string
		token *string
	}{{PayCard, &c.pay}, {DeclineCard, &c.decline}} {
		if err := retry(ctx, func() error {
			a := send(ctx, c.http, "POST", s.base+"/api/payment-methods", s.bearer(ctx, c), map[string]string{"card": m.card}, s.cfg.Timeout)
			var pm struct {
				Token string `json:"token"`
			}
			if a.failure(201) != "" || a.decode(&pm) != nil || pm.Token == "" {
				return fmt.Errorf("payment method of %s: %s", c.email, a)
			}
			*m.token = pm.Token
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// signIn signs c up and logs it in.
func (s *shop) signIn(ctx context.Context, c *client) error {
	body := map[string]string{"name": fmt.Sprintf("Shopper %d", c.n), "email": c.email, "password": c.password}
	if err := retry(ctx, func() error {
		a := send(ctx, c.http, "POST", s.base+"/api/auth/register", "", body, s.cfg.Timeout)
		if a.failure(201, 409) != "" { // 409: an earlier try got through
			return fmt.Errorf("sign up %s: %s", c.email, a)
		}
		return nil
	}); err != nil {
		return err
	}
	return retry(ctx, func() error {
		a := send(ctx, c.http, "POST", s.base+"/api/auth/login", "", map[string]string{"email": c.email, "password": c.password}, s.cfg.Timeout)
		var tok tokens
		if a.failure(200) != "" || a.decode(&tok) != nil || tok.AccessToken == "" {
			return fmt.Errorf("log in %s: %s", c.email, a)
		}
		c.setTokens(tok)
		return nil
	})
}

// permanent is a setup error that trying again cannot fix.
type permanent struct{ error }

// retry runs f until it succeeds, fails permanently, or ctx ends, with
// growing pauses: setup is not measured, and a system that has just
// started may still be finding its parts.
func retry(ctx context.Context, f func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := f()
		var p permanent
		if err == nil || errors.As(err, &p) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
