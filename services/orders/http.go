package orders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Routes registers every route of the orders API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("POST /orders", s.place)
	rt.Handle("GET /orders", s.list)
	rt.Handle("GET /orders/{id}", s.get)
	rt.Handle("GET /orders/{id}/events", s.events)
	rt.Handle("GET /orders/{id}/stream", s.stream)
	rt.Handle("POST /orders/{id}/cancel", s.cancel)
}

type placeRequest struct {
	Items         []itemRequest `json:"items"`
	PaymentMethod string        `json:"payment_method"`
	// Card is read only to be refused with a pointer to where cards go:
	// orders never keeps one.
	Card *string `json:"card,omitempty"`
}

type itemRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

func (req placeRequest) validate() error {
	var fields []problem.FieldError
	add := func(f, d string) { fields = append(fields, problem.FieldError{Field: f, Detail: d}) }
	if len(req.Items) == 0 || len(req.Items) > 50 {
		add("items", "must list 1 to 50 items")
	}
	seen := map[string]bool{}
	for i, it := range req.Items {
		f := fmt.Sprintf("items[%d]", i)
		if !server.ValidID(it.ProductID) {
			add(f+".product_id", "must be a product id (a UUID)")
		} else if seen[it.ProductID] {
			add(f+".product_id", "appears twice; order it once with the quantity you want")
		}
		seen[it.ProductID] = true
		if it.Quantity < 1 || it.Quantity > 1000 {
			add(f+".quantity", "must be from 1 to 1000")
		}
	}
	if req.Card != nil {
		add("card", "orders takes no card numbers: exchange the card for a token at POST /api/payment-methods and send the token as payment_method")
	}
	if !validPaymentMethod(req.PaymentMethod) {
		add("payment_method", "must be a payment method's token (pm_…), from POST /api/payment-methods")
	}
	return problem.Fields(fields)
}

// hash identifies a request, for Idempotency-Key: the same items in any
// order and the same payment method hash the same.
func (req placeRequest) hash() string {
	items := slices.Clone(req.Items)
	slices.SortFunc(items, func(a, b itemRequest) int { return strings.Compare(a.ProductID, b.ProductID) })
	b, _ := json.Marshal(placeRequest{Items: items, PaymentMethod: req.PaymentMethod})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Service) place(w http.ResponseWriter, r *http.Request) error {
	caller := auth.FromRequest(r)
	if err := caller.RequireUser(); err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 100 {
		return problem.Field("Idempotency-Key", "the header is required: a unique string of up to 100 characters per order")
	}
	var req placeRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	hash := req.hash()
	if id, prev, err := s.store.existing(r.Context(), caller.UserID, key); err != nil {
		return err
	} else if id != "" {
		if prev != hash {
			return ErrKeyReused
		}
		o, _, err := s.store.Load(r.Context(), id)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/orders/"+o.ID)
		server.WriteJSON(w, http.StatusOK, o)
		return nil
	}
	lines, total, err := s.price(r.Context(), req.Items)
	if err != nil {
		return err
	}
	t := time.Now().UTC().Truncate(time.Microsecond)
	o := Order{ID: server.NewID(), CustomerID: caller.UserID, Lines: lines, Total: total, PaymentMethod: req.PaymentMethod, CreatedAt: t, Deadline: t.Add(s.deadline)}
	o, created, err := s.store.Place(r.Context(), o, key, hash)
	if err != nil {
		return err
	}
	// The console finds an order's trace by this attribute.
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("order.id", o.ID))
	w.Header().Set("Location", "/orders/"+o.ID)
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	server.WriteJSON(w, status, o)
	return nil
}

// price asks the catalog for each item's price, now: the client's idea of
// the price does not count.
func (s *Service) price(ctx context.Context, items []itemRequest) ([]Line, money.Money, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var lines []Line
	var total money.Money
	for _, it := range items {
		p, err := s.productPrice(ctx, it.ProductID)
		if err != nil {
			return nil, money.Money{}, err
		}
		if total.Currency != "" && p.Currency != total.Currency {
			return nil, money.Money{}, problem.New(problem.Unprocessable, "the items are priced in %s and %s; order them separately", total.Currency, p.Currency)
		}
		total.Currency = p.Currency
		line, ok := money.Mul(p.Amount, it.Quantity)
		if ok {
			total.Amount, ok = money.Add(total.Amount, line)
		}
		if !ok {
			return nil, money.Money{}, problem.New(problem.Unprocessable, "the order would cost more than %d %s (minor units), the most one order may: order less", money.MaxAmount, p.Currency)
		}
		lines = append(lines, Line{ProductID: it.ProductID, Quantity: it.Quantity, UnitPrice: p})
	}
	return lines, total, nil
}

func (s *Service) productPrice(ctx context.Context, id string) (money.Money, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://catalog/products/"+id, nil)
	if err != nil {
		return money.Money{}, err
	}
	resp, err := s.catalog.Do(req)
	if err != nil {
		return money.Money{}, problem.Wrap(problem.Unavailable, err, "the catalog is unavailable; try again")
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return money.Money{}, problem.New(problem.Unprocessable, "product %s does not exist", id)
	default:
		return money.Money{}, problem.New(problem.Unavailable, "the catalog answered %d; try again", resp.StatusCode)
	}
	var p struct {
		Price money.Money `json:"price"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return money.Money{}, problem.Wrap(problem.BadGateway, err, "the catalog's answer did not parse")
	}
	return p.Price, nil
}

// own loads an order the caller may see: their own, or any for an admin.
// Someone else's order is not found, rather than forbidden: its existence
// is not theirs to know.
func (s *Service) own(r *http.Request) (Order, []Event, error) {
	caller := auth.FromRequest(r)
	if err := caller.RequireUser(); err != nil {
		return Order{}, nil, err
	}
	id, err := server.PathID(r, "id")
	if err != nil {
		return Order{}, nil, err
	}
	o, log, err := s.store.Load(r.Context(), id)
	if err != nil {
		return Order{}, nil, err
	}
	if o.CustomerID != caller.UserID && !caller.IsAdmin() {
		return Order{}, nil, problem.New(problem.NotFound, "order %s not found", id)
	}
	return o, log, nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	o, _, err := s.own(r)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, o)
	return nil
}

// list pages through the caller's orders, newest first; an admin may ask
// for everyone's with ?scope=all.
func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	caller := auth.FromRequest(r)
	if err := caller.RequireUser(); err != nil {
		return err
	}
	q, err := server.ParsePageQuery(r)
	if err != nil {
		return err
	}
	customer := caller.UserID
	switch r.URL.Query().Get("scope") {
	case "", "mine":
	case "all":
		if err := caller.RequireAdmin(); err != nil {
			return err
		}
		customer = ""
	default:
		return problem.Field("scope", "must be mine or all")
	}
	orders, err := s.store.List(r.Context(), customer, q.After, q.Limit+1)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, server.NewPage(orders, q, func(o Order) string { return o.ID }))
	return nil
}

func (s *Service) events(w http.ResponseWriter, r *http.Request) error {
	_, log, err := s.own(r)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"items": log})
	return nil
}

// orderUpdate is one event of an order's stream: the order's state, and
// the entries of its log the client has not seen yet.
type orderUpdate struct {
	Order  Order   `json:"order"`
	Events []Event `json:"events"`
}

// stream follows an order as Server-Sent Events until it is confirmed or
// cancelled: an "order" event whenever its log grows, with id the log's
// last seq, so that a client that connects again (Last-Event-ID) gets only
// what it missed. The log is read again every pollEvery: the answer that
// moves an order on may be applied by any instance of orders.
func (s *Service) stream(w http.ResponseWriter, r *http.Request) error {
	o, log, err := s.own(r)
	if err != nil {
		return err
	}
	id := o.ID
	seen, _ := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
	es, err := server.NewEventStream(w, time.Second)
	if err != nil {
		return nil // the client left
	}
	ctx := r.Context()
	end := time.NewTimer(time.Until(server.StreamUntil(r)))
	defer end.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	quiet := 0
	for {
		if last := log[len(log)-1].Seq; last > seen {
			var fresh []Event
			for _, e := range log {
				if e.Seq > seen {
					fresh = append(fresh, e)
				}
			}
			if err := es.Send(strconv.FormatInt(last, 10), "order", orderUpdate{Order: o, Events: fresh}); err != nil {
				return nil
			}
			seen, quiet = last, 0
		} else if quiet++; quiet%int(5*time.Second/pollEvery) == 0 {
			if err := es.Ping(); err != nil {
				return nil
			}
		}
		if Terminal(o.Status) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-end.C:
			return nil
		case <-poll.C:
		}
		if o, log, err = s.store.Load(ctx, id); err != nil {
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "order stream: reading the order failed", "order", id, "err", err)
			}
			return nil // the status line is out; the client connects again
		}
	}
}

// pollEvery is how often an order's stream reads its log.
const pollEvery = 100 * time.Millisecond

func (s *Service) cancel(w http.ResponseWriter, r *http.Request) error {
	o, _, err := s.own(r)
	if err != nil {
		return err
	}
	err = s.store.Act(r.Context(), o.ID, func(o Order) []step {
		if Terminal(o.Status) {
			return nil
		}
		return cancel(o, saga.ReasonCustomer)
	})
	if err != nil {
		return err
	}
	o, _, err = s.store.Load(r.Context(), o.ID)
	if err != nil {
		return err
	}
	if o.Status == Confirmed {
		return problem.New(problem.Conflict, "order %s is confirmed; it can no longer be cancelled", o.ID)
	}
	server.WriteJSON(w, http.StatusOK, o)
	return nil
}

// validPaymentMethod says whether s looks like a payment method's token:
// payments alone knows whether it is one, and whose.
func validPaymentMethod(s string) bool {
	rest, ok := strings.CutPrefix(s, "pm_")
	return ok && rest != "" && len(rest) <= 64 && strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
}
