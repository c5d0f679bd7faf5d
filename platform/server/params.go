package server

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/souk-shop/souk/platform/problem"
)

// NewID returns a new resource id: a UUIDv7, so ids sort by creation time
// and keyset pagination by id lists oldest first.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// PathID returns the path value name, which must be an id in canonical UUID
// form; anything else is rejected before it reaches a query.
func PathID(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if !ValidID(v) {
		return "", problem.Field(name, "must be a UUID like 0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d")
	}
	return v, nil
}

// ValidID reports whether s is a UUID in canonical lower-case form.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// Page is one page of a list, with the cursor of the next page if there is one.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// PageQuery is the parsed ?limit= and ?cursor= of a list request.
type PageQuery struct {
	Limit int    // 1 to MaxLimit
	After string // the id after which the page starts; "" for the first page
}

// Page sizes.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// ParsePageQuery reads ?limit= (default 20, at most 100) and ?cursor= (from
// a previous page's next_cursor).
func ParsePageQuery(r *http.Request) (PageQuery, error) {
	q := PageQuery{Limit: DefaultLimit}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, problem.Field("limit", "must be an integer from 1 to 100")
		}
		q.Limit = n
	}
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || !ValidID(string(b)) {
			return q, problem.Field("cursor", "is not a cursor this API returned")
		}
		q.After = string(b)
	}
	return q, nil
}

// NewPage makes a page from up to Limit+1 items fetched after q.After: if
// the extra item is there, the page gets a cursor to the rest.
func NewPage[T any](items []T, q PageQuery, id func(T) string) Page[T] {
	if items == nil {
		items = []T{}
	}
	p := Page[T]{Items: items}
	if len(items) > q.Limit {
		p.Items = items[:q.Limit]
		p.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(id(p.Items[q.Limit-1])))
	}
	return p
}
