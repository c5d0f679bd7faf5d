package inventory

import (
	"net/http"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Routes registers every route of the inventory API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("GET /inventory/{productId}", s.get)
	rt.Handle("PUT /inventory/{productId}", s.put)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "productId")
	if err != nil {
		return err
	}
	st, err := s.store.Get(r.Context(), id)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, st)
	return nil
}

type putRequest struct {
	Available *int64 `json:"available"`
}

func (s *Service) put(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	id, err := server.PathID(r, "productId")
	if err != nil {
		return err
	}
	var req putRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Available == nil {
		return problem.Field("available", "is required")
	}
	st, err := s.store.SetAvailable(r.Context(), id, *req.Available)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, st)
	return nil
}
