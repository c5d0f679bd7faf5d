package payments

import (
	"net/http"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Routes registers every route of the payments API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("GET /payments/{orderId}", s.get)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	id, err := server.PathID(r, "orderId")
	if err != nil {
		return err
	}
	p, ok, err := s.store.Get(r.Context(), id)
	if err != nil {
		return err
	}
	if !ok {
		return problem.New(problem.NotFound, "no payment for order %s", id)
	}
	server.WriteJSON(w, http.StatusOK, p)
	return nil
}
