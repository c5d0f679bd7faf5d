package users

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Routes registers every route of the users API. Identity comes from the
// gateway's headers (auth.FromRequest); each handler checks what it needs.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("POST /auth/register", s.register)
	rt.Handle("POST /auth/login", s.login)
	rt.Handle("POST /auth/refresh", s.refresh)
	rt.Handle("POST /auth/logout", s.logout)
	rt.Handle("POST /auth/password", s.changePassword)
	rt.Handle("GET /.well-known/jwks.json", s.jwks)
	rt.Handle("POST /auth/signing-keys/rotate", s.rotate)
	rt.Handle("POST /auth/keys", s.createKey)
	rt.Handle("GET /auth/keys", s.listKeys)
	rt.Handle("DELETE /auth/keys/{id}", s.revokeKey)

	rt.Handle("POST /users", s.create)
	rt.Handle("GET /users", s.list)
	rt.Handle("GET /users/{id}", s.get)
	rt.Handle("PATCH /users/{id}", s.update)
	rt.Handle("DELETE /users/{id}", s.delete)
}

type registerRequest struct {
	Name     *string `json:"name"`
	Email    *string `json:"email"`
	Password *string `json:"password"`
	Role     *string `json:"role"`
}

// newUser validates a registration and hashes its password on the
// hasher's queue for the client's address, queue.
func (s *Service) newUser(ctx context.Context, queue string, req registerRequest, passwordRequired bool) (User, string, error) {
	t := now()
	u := User{ID: newID(), Name: deref(req.Name), Email: deref(req.Email), Role: auth.RoleCustomer, CreatedAt: t, UpdatedAt: t}
	if req.Role != nil {
		u.Role = *req.Role
	}
	var fields []problem.FieldError
	if err := u.validate(); err != nil {
		fields = append(fields, err.(*problem.Error).Fields...)
	}
	if err := auth.ValidRole(u.Role); err != nil {
		fields = append(fields, problem.FieldError{Field: "role", Detail: "must be customer or admin"})
	}
	if req.Password != nil || passwordRequired {
		if msg := checkPassword(deref(req.Password)); msg != "" {
			fields = append(fields, problem.FieldError{Field: "password", Detail: msg})
		}
	}
	if err := problem.Fields(fields); err != nil {
		return User{}, "", err
	}
	if req.Password == nil {
		return u, "", nil
	}
	hash, err := s.hasher.For(queue).Hash(ctx, *req.Password)
	if errors.Is(err, auth.ErrBusy) {
		return User{}, "", problem.Wrap(problem.Unavailable, err, "too many sign-ups at once; try again")
	}
	return u, hash, err
}

// register lets anyone sign up as a customer, with a password.
func (s *Service) register(w http.ResponseWriter, r *http.Request) error {
	var req registerRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Role != nil {
		return problem.Field("role", "cannot be chosen at sign-up")
	}
	return s.createUser(w, r, req, true)
}

// create lets an admin add a user, with any role and optionally a password.
func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	var req registerRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	return s.createUser(w, r, req, false)
}

func (s *Service) createUser(w http.ResponseWriter, r *http.Request, req registerRequest, passwordRequired bool) error {
	u, hash, err := s.newUser(r.Context(), clientAddr(r), req, passwordRequired)
	if err != nil {
		return err
	}
	if err := s.store.Create(r.Context(), u, hash); err != nil {
		return err
	}
	w.Header().Set("Location", "/users/"+u.ID)
	server.WriteJSON(w, http.StatusCreated, u)
	return nil
}

type loginRequest struct {
	Email    *string `json:"email"`
	Password *string `json:"password"`
}

// Token is what a login, a refresh or a password change returns: an
// access token and the refresh token that gets the next.
type Token struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int    `json:"refresh_expires_in"`
}

// writeToken signs an access token for ses and sends it with ses's next
// refresh token.
func (s *Service) writeToken(w http.ResponseWriter, r *http.Request, ses Session) error {
	key, err := s.store.ActiveKey(r.Context())
	if err != nil {
		return err
	}
	t := time.Now()
	token, err := key.Sign(ses.UserID, ses.Role, ses.ID, t)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	server.WriteJSON(w, http.StatusOK, Token{
		AccessToken: token, TokenType: "Bearer", ExpiresIn: int(auth.TokenTTL.Seconds()),
		RefreshToken: ses.Refresh, RefreshExpiresIn: int(ses.Expires.Sub(t).Seconds()),
	})
	return nil
}

func (s *Service) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Email == nil || req.Password == nil {
		return problem.New(problem.Invalid, "email and password are required")
	}
	email, msg := canonicalEmail(*req.Email)
	if msg != "" {
		return problem.Field("email", msg)
	}
	id, role, err := s.checkPassword(w, r, email.Key, *req.Password)
	if err != nil {
		return err
	}
	ses, err := s.store.StartSession(r.Context(), id, role)
	if err != nil {
		return err
	}
	return s.writeToken(w, r, ses)
}

type refreshRequest struct {
	RefreshToken *string `json:"refresh_token"`
}

func (r refreshRequest) token() (string, error) {
	if r.RefreshToken == nil || *r.RefreshToken == "" || len(*r.RefreshToken) > 100 {
		return "", problem.Field("refresh_token", "is required")
	}
	return *r.RefreshToken, nil
}

// refresh exchanges a refresh token for an access token and the next
// refresh token; the one sent is then spent.
func (s *Service) refresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	token, err := req.token()
	if err != nil {
		return err
	}
	ses, err := s.store.Refresh(r.Context(), token)
	if err != nil {
		return err
	}
	return s.writeToken(w, r, ses)
}

// logout ends the session a refresh token belongs to: its refresh tokens
// are refused from now, and its access tokens within seconds at every
// gateway. It answers 204 whatever the token (RFC 7009): a token that ends
// nothing tells nothing.
func (s *Service) logout(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	token, err := req.token()
	if err != nil {
		return err
	}
	if err := s.store.EndSession(r.Context(), token); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type passwordRequest struct {
	CurrentPassword *string `json:"current_password"`
	NewPassword     *string `json:"new_password"`
}

// changePassword sets the caller's password, given the current one; every
// session of theirs ends, and the answer begins a new one.
func (s *Service) changePassword(w http.ResponseWriter, r *http.Request) error {
	caller := auth.FromRequest(r)
	if err := caller.RequireUser(); err != nil {
		return err
	}
	var req passwordRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	var fields []problem.FieldError
	if req.CurrentPassword == nil {
		fields = append(fields, problem.FieldError{Field: "current_password", Detail: "is required"})
	}
	if msg := checkPassword(deref(req.NewPassword)); msg != "" {
		fields = append(fields, problem.FieldError{Field: "new_password", Detail: msg})
	}
	if err := problem.Fields(fields); err != nil {
		return err
	}
	if err := s.confirmPassword(w, r, caller.UserID, *req.CurrentPassword); err != nil {
		return err
	}
	hash, err := s.hasher.For(clientAddr(r)).Hash(r.Context(), *req.NewPassword)
	if errors.Is(err, auth.ErrBusy) {
		return problem.Wrap(problem.Unavailable, err, "too many password changes at once; try again")
	}
	if err != nil {
		return err
	}
	if err := s.store.SetPassword(r.Context(), caller.UserID, hash); err != nil {
		return err
	}
	u, err := s.store.Get(r.Context(), caller.UserID)
	if err != nil {
		return err
	}
	ses, err := s.store.StartSession(r.Context(), u.ID, u.Role)
	if err != nil {
		return err
	}
	return s.writeToken(w, r, ses)
}

// confirmPassword checks that password is the current password of the
// user with id, under the login throttle: a change that needs it (the
// password, the email) is refused, 403, if it is wrong.
func (s *Service) confirmPassword(w http.ResponseWriter, r *http.Request, userID, password string) error {
	key, err := s.store.emailKeyOf(r.Context(), userID)
	if err != nil {
		return err
	}
	id, _, err := s.checkPassword(w, r, key, password)
	if problem.CodeOf(err) == problem.Unauthorized || err == nil && id != userID {
		return problem.New(problem.Forbidden, "the password is wrong")
	}
	return err
}

// checkPassword checks the password of the account whose email has key,
// under the login throttle (throttle.go), and returns the account's id and
// role. A wrong email or password is Unauthorized, a try that must wait
// TooManyRequests with Retry-After, and one the hasher had no room for
// Unavailable: none of these says whether the account exists.
func (s *Service) checkPassword(w http.ResponseWriter, r *http.Request, emailKey, password string) (id, role string, err error) {
	ctx := r.Context()
	addr := clientAddr(r)
	keys := newLoginKeys(emailKey, addr)
	wait, err := s.store.beginLogin(ctx, keys)
	if err != nil {
		return "", "", err
	}
	if wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return "", "", problem.New(problem.TooManyRequests, "too many failed logins; try again in %s", time.Duration(secs)*time.Second)
	}
	ok := false
	checked := false
	defer func() {
		if ok || !checked {
			// The failure counted in advance was not one.
			if end := s.store.endLogin(context.WithoutCancel(ctx), keys, ok); end != nil && err == nil {
				err = end
			}
		}
	}()
	id, hash, role, err := s.store.credentials(ctx, emailKey)
	if err != nil {
		return "", "", err
	}
	// Each client address is a queue of its own: a storm from some
	// addresses does not starve the others.
	ok, err = s.hasher.For(addr).Verify(ctx, password, hash)
	if errors.Is(err, auth.ErrBusy) {
		return "", "", problem.Wrap(problem.Unavailable, err, "too many logins at once; try again")
	}
	if err != nil {
		return "", "", err
	}
	checked = true
	if !ok {
		return "", "", problem.New(problem.Unauthorized, "wrong email or password")
	}
	return id, role, nil
}

// clientAddr is the client's address as the gateway saw it, from the
// gateway's signed proof: never a header anyone could send
// (X-Forwarded-For), or else the peer's.
func clientAddr(r *http.Request) string {
	if addr := auth.CallerOf(r).Addr; addr != "" {
		return addr
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Service) jwks(w http.ResponseWriter, r *http.Request) error {
	set, err := s.store.PublicKeys(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	server.WriteJSON(w, http.StatusOK, set)
	return nil
}

func (s *Service) rotate(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	kid, activates, err := s.store.RotateKey(r.Context(), s.keyLead)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"kid": kid, "activates_at": activates})
	return nil
}

type createKeyRequest struct {
	Name *string `json:"name"`
}

func (s *Service) createKey(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromRequest(r)
	if err := id.RequireUser(); err != nil {
		return err
	}
	var req createKeyRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	name := strings.TrimSpace(deref(req.Name))
	if name == "" || len(name) > 100 {
		return problem.Field("name", "is required, at most 100 characters")
	}
	k, err := s.store.CreateAPIKey(r.Context(), id.UserID, name)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/auth/keys/"+k.ID)
	server.WriteJSON(w, http.StatusCreated, k)
	return nil
}

func (s *Service) listKeys(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromRequest(r)
	if err := id.RequireUser(); err != nil {
		return err
	}
	keys, err := s.store.APIKeys(r.Context(), id.UserID)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"items": keys})
	return nil
}

func (s *Service) revokeKey(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromRequest(r)
	if err := id.RequireUser(); err != nil {
		return err
	}
	keyID, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	if err := s.store.RevokeAPIKey(r.Context(), keyID, id.UserID, id.IsAdmin()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	if err := auth.FromRequest(r).RequireSelfOrAdmin(id); err != nil {
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
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
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
	Role  *string `json:"role"`
	// Password is the caller's current password, which changing an email
	// needs: an email is how the account is signed in to.
	Password *string `json:"password"`
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	caller := auth.FromRequest(r)
	if err := caller.RequireSelfOrAdmin(id); err != nil {
		return err
	}
	var req updateRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Email == nil && req.Role == nil {
		return problem.New(problem.Invalid, "nothing to change: set name, email or role")
	}
	if req.Role != nil {
		if !caller.IsAdmin() {
			return problem.New(problem.Forbidden, "only admins may change roles")
		}
		if err := auth.ValidRole(*req.Role); err != nil {
			return problem.Field("role", "must be customer or admin")
		}
	}
	if req.Email != nil {
		if msg := checkEmail(*req.Email); msg != "" {
			return problem.Field("email", msg)
		}
		if req.Password == nil {
			return problem.Field("password", "is required to change the email: your current password")
		}
		if err := s.confirmPassword(w, r, caller.UserID, *req.Password); err != nil {
			return err
		}
	} else if req.Password != nil {
		return problem.Field("password", "goes with a new email; change a password with POST /auth/password")
	}
	u, err := s.store.Update(r.Context(), id, func(u *User) error {
		if req.Name != nil {
			u.Name = *req.Name
		}
		if req.Email != nil {
			u.Email = *req.Email
		}
		if req.Role != nil {
			u.Role = *req.Role
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
	if err := auth.FromRequest(r).RequireSelfOrAdmin(id); err != nil {
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
