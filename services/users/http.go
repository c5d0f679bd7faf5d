package users

import (
	"net/http"
	"time"

	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Service serves the users API.
type Service struct {
	store *Store
}

// New returns the service over st.
func New(st *Store) *Service { return &Service{store: st} }

// Routes registers every route of the users API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("POST /users", s.create)
	rt.Handle("GET /users", s.list)
	rt.Handle("GET /users/{id}", s.get)
	rt.Handle("PATCH /users/{id}", s.update)
	rt.Handle("DELETE /users/{id}", s.delete)
}

type createRequest struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	u := User{ID: server.NewID(), Name: deref(req.Name), Email: deref(req.Email), CreatedAt: now, UpdatedAt: now}
	if err := u.validate(); err != nil {
		return err
	}
	if err := s.store.Create(r.Context(), u); err != nil {
		return err
	}
	w.Header().Set("Location", "/users/"+u.ID)
	server.WriteJSON(w, http.StatusCreated, u)
	return nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	u, err := s.store.Get(r.Context(), id)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	q, err := server.ParsePageQuery(r)
	if err != nil {
		return err
	}
	users, err := s.store.List(r.Context(), q.After, q.Limit+1)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, server.NewPage(users, q, func(u User) string { return u.ID }))
	return nil
}

type updateRequest struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	var req updateRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Email == nil {
		return problem.New(problem.Invalid, "nothing to change: set name or email")
	}
	u, err := s.store.Update(r.Context(), id, func(u *User) error {
		if req.Name != nil {
			u.Name = *req.Name
		}
		if req.Email != nil {
			u.Email = *req.Email
		}
		return u.validate()
	})
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) error {
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
