package payments

import (
	"net/http"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Routes registers every route of the payments API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("POST /payment-methods", s.addMethod)
	rt.Handle("GET /payment-methods", s.listMethods)
	rt.Handle("DELETE /payment-methods/{token}", s.deleteMethod)
	rt.Handle("GET /payments/{orderId}", s.get)
}

// maxMethods bounds the payment methods one customer keeps.
const maxMethods = 20

type addMethodRequest struct {
	Card string `json:"card"`
}

// addMethod exchanges a card for a token: the card is checked, sealed and
// kept here; the customer gets the token, the brand and the last four
// digits, and pays orders with the token.
func (s *Service) addMethod(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromRequest(r)
	if err := id.RequireUser(); err != nil {
		return err
	}
	var req addMethodRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	number, err := cardNumber(req.Card)
	if err != nil {
		return err
	}
	switch n, err := s.store.CountMethods(r.Context(), id.UserID); {
	case err != nil:
		return err
	case n >= maxMethods:
		return problem.New(problem.Conflict, "you have %d payment methods, the most one may keep: delete one first", n)
	}
	m := Method{Token: newToken(), CustomerID: id.UserID, Brand: brand(number), Last4: number[len(number)-4:], CreatedAt: now()}
	sealed, err := s.keys.Seal([]byte(number), []byte(m.Token))
	if err != nil {
		return err
	}
	if err := s.store.AddMethod(r.Context(), m, sealed); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/payment-methods/"+m.Token)
	server.WriteJSON(w, http.StatusCreated, m)
	return nil
}

func (s *Service) listMethods(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromRequest(r)
	if err := id.RequireUser(); err != nil {
		return err
	}
	ms, err := s.store.Methods(r.Context(), id.UserID)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	server.WriteJSON(w, http.StatusOK, map[string]any{"items": ms})
	return nil
}

// deleteMethod removes one of the caller's payment methods (an admin's:
// anyone's). Orders still to be paid with it are declined.
func (s *Service) deleteMethod(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromRequest(r)
	if err := id.RequireUser(); err != nil {
		return err
	}
	token := r.PathValue("token")
	owner := id.UserID
	if id.IsAdmin() {
		owner = ""
	}
	ok := false
	if ValidToken(token) {
		var err error
		if ok, err = s.store.DeleteMethod(r.Context(), token, owner); err != nil {
			return err
		}
	}
	if !ok {
		return problem.New(problem.NotFound, "no such payment method")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
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
