package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/souk-shop/souk/api/catalogv1"
	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/store"
)

// Store keeps products in the service's database, and writes the events
// their changes imply to the outbox in the same transaction.
type Store struct {
	db     *store.DB
	outbox *events.Outbox
}

// NewStore returns a store over db, which must be migrated, with its
// events going to outbox.
func NewStore(db *store.DB, outbox *events.Outbox) *Store { return &Store{db: db, outbox: outbox} }

const productColumns = `id, name, description, price_amount, price_currency, created_at, updated_at`

func scanProduct(row interface{ Scan(...any) error }) (Product, error) {
	var p Product
	err := row.Scan(&p.ID, &p.Name, &p.Description, &p.Price.Amount, &p.Price.Currency, &p.CreatedAt, &p.UpdatedAt)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// Create inserts p and publishes ProductCreated.
func (s *Store) Create(ctx context.Context, p Product) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO products (`+productColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			p.ID, p.Name, p.Description, p.Price.Amount, p.Price.Currency, p.CreatedAt, p.UpdatedAt)
		if err != nil {
			return fmt.Errorf("insert product: %w", err)
		}
		return s.outbox.Emit(ctx, tx, catalogv1.ProductCreated, p.ID, catalogv1.Product(p))
	})
}

// Get returns the product with id, or NotFound.
func (s *Store) Get(ctx context.Context, id string) (Product, error) {
	return getProduct(ctx, s.db, id)
}

func getProduct(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (Product, error) {
	p, err := scanProduct(q.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, problem.New(problem.NotFound, "product %s not found", id)
	}
	if err != nil {
		return Product{}, fmt.Errorf("get product: %w", err)
	}
	return p, nil
}

// List returns up to limit products with ids after after ("" for the
// start), oldest first, whose name contains search (any case) if it is not
// empty.
func (s *Store) List(ctx context.Context, after, search string, limit int) ([]Product, error) {
	query := `SELECT ` + productColumns + ` FROM products WHERE id > $1 ORDER BY id LIMIT $2`
	args := []any{after, limit}
	if search != "" {
		query = `SELECT ` + productColumns + ` FROM products WHERE id > $1 AND LOWER(name) LIKE $2 ESCAPE '\' ORDER BY id LIMIT $3`
		args = []any{after, "%" + escapeLike(strings.ToLower(search)) + "%", limit}
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	defer rows.Close()
	var out []Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, fmt.Errorf("list products: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// escapeLike makes s match itself in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Update applies fn to the product with id in one transaction and stores
// the result, which it returns, publishing ProductUpdated and, if the price
// changed, PriceChanged. An error from fn aborts the update.
func (s *Store) Update(ctx context.Context, id string, fn func(*Product) error) (Product, error) {
	var p Product
	err := s.outbox.Do(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = getProduct(ctx, tx, id); err != nil {
			return err
		}
		old := p
		if err := fn(&p); err != nil {
			return err
		}
		if p == old {
			return nil // nothing changed: nothing to store or tell
		}
		p.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
		_, err = tx.ExecContext(ctx,
			`UPDATE products SET name = $1, description = $2, price_amount = $3, price_currency = $4, updated_at = $5 WHERE id = $6`,
			p.Name, p.Description, p.Price.Amount, p.Price.Currency, p.UpdatedAt, p.ID)
		if err != nil {
			return fmt.Errorf("update product: %w", err)
		}
		if err := s.outbox.Emit(ctx, tx, catalogv1.ProductUpdated, p.ID, catalogv1.Product(p)); err != nil || p.Price == old.Price {
			return err
		}
		return s.outbox.Emit(ctx, tx, catalogv1.PriceChanged, p.ID, catalogv1.PriceChangedData{ID: p.ID, Old: old.Price, New: p.Price})
	})
	return p, err
}

// Delete removes the product with id and publishes ProductDeleted, or
// returns NotFound.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM products WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete product: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return problem.New(problem.NotFound, "product %s not found", id)
		}
		return s.outbox.Emit(ctx, tx, catalogv1.ProductDeleted, id, catalogv1.ProductDeletedData{ID: id})
	})
}

// Stats are the catalog's admin figures.
type Stats struct {
	Products int64 `json:"products"`
	// RegisteredUsers counts the users service's UserRegistered events:
	// a read model kept by a consumer, not a query of another service's
	// database.
	RegisteredUsers int64 `json:"registered_users"`
}

// Stats counts products and registered users.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.db.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM products), registered_users FROM user_stats WHERE id = 1`).
		Scan(&st.Products, &st.RegisteredUsers)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

// countRegistration is the effect of one UserRegistered event.
func (s *Store) countRegistration(ctx context.Context, tx *sql.Tx, _ events.Event, _ usersv1.UserRegisteredData) error {
	if _, err := tx.ExecContext(ctx, `UPDATE user_stats SET registered_users = registered_users + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("count a registration: %w", err)
	}
	return nil
}
