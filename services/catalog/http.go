package catalog

import (
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Routes registers every route of the catalog API. Anyone may read the
// catalog; only admins (by the gateway's identity headers) change it.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("POST /products", s.create)
	rt.Handle("GET /products", s.list)
	rt.Handle("GET /products/{id}", s.get)
	rt.Handle("PATCH /products/{id}", s.update)
	rt.Handle("DELETE /products/{id}", s.delete)
	rt.Handle("GET /catalog/stats", s.stats)
}

func (s *Service) stats(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	st, err := s.store.Stats(r.Context())
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, st)
	return nil
}

type moneyRequest struct {
	Amount   *int64  `json:"amount"`
	Currency *string `json:"currency"`
}

// money checks that both parts of a price are present.
func (m *moneyRequest) money() (money.Money, error) {
	if m.Amount == nil {
		return money.Money{}, problem.Field("price.amount", "is required (an integer in minor units, e.g. 1999 for 19.99)")
	}
	if m.Currency == nil {
		return money.Money{}, problem.Field("price.currency", "is required")
	}
	return money.Money{Amount: *m.Amount, Currency: *m.Currency}, nil
}

type createRequest struct {
	Name        *string       `json:"name"`
	Description *string       `json:"description"`
	Price       *moneyRequest `json:"price"`
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	var req createRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Price == nil {
		return problem.Field("price", "is required")
	}
	price, err := req.Price.money()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	p := Product{ID: server.NewID(), Name: deref(req.Name), Description: deref(req.Description), Price: price, CreatedAt: now, UpdatedAt: now}
	if err := p.validate(); err != nil {
		return err
	}
	if err := s.store.Create(r.Context(), p); err != nil {
		return err
	}
	w.Header().Set("Location", "/products/"+p.ID)
	server.WriteJSON(w, http.StatusCreated, p)
	return nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	p, err := s.store.Get(r.Context(), id)
	if err != nil {
		return err
	}
	server.WriteCacheable(w, r, readCaching, p)
	return nil
}

// readCaching is how long browsers and caches may reuse a catalog read
// before they ask again (with If-None-Match, for a 304 if nothing
// changed): a price seen 5 s late is harmless, since orders take the
// current one from the catalog.
const readCaching = "public, max-age=5"

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	q, err := server.ParsePageQuery(r)
	if err != nil {
		return err
	}
	search := r.URL.Query().Get("q")
	if utf8.RuneCountInString(search) > 200 {
		return problem.Field("q", "must be at most 200 characters")
	}
	products, err := s.store.List(r.Context(), q.After, search, q.Limit+1)
	if err != nil {
		return err
	}
	server.WriteCacheable(w, r, readCaching, server.NewPage(products, q, func(p Product) string { return p.ID }))
	return nil
}

type updateRequest struct {
	Name        *string       `json:"name"`
	Description *string       `json:"description"`
	Price       *moneyRequest `json:"price"`
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	var req updateRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Description == nil && req.Price == nil {
		return problem.New(problem.Invalid, "nothing to change: set name, description or price")
	}
	var price money.Money
	if req.Price != nil {
		if price, err = req.Price.money(); err != nil {
			return err
		}
	}
	p, err := s.store.Update(r.Context(), id, func(p *Product) error {
		if req.Name != nil {
			p.Name = *req.Name
		}
		if req.Description != nil {
			p.Description = *req.Description
		}
		if req.Price != nil {
			p.Price = price
		}
		return p.validate()
	})
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	if err := s.store.Delete(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
