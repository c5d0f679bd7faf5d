package secrets

import (
	"context"
	"database/sql"
	"fmt"
)

// Column is a table's column of sealed values, each bound to its row's key
// (the context it was sealed in).
type Column struct {
	Table string
	Key   string // the primary key: one column, text
	Value string
}

func (c Column) String() string { return c.Table + "." + c.Value }

// DB is what re-wrapping needs of a database: *sql.DB and store.DB have it.
type DB interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// RewrapColumn re-wraps every value of c not under the keyring's primary
// KEK, and returns how many it changed and how many values each KEK seals
// now. A row changed meanwhile by its service is left as it is now (and
// counted under its KEK).
func (k *Keyring) RewrapColumn(ctx context.Context, db DB, c Column) (changed int, byKey map[string]int, err error) {
	byKey = map[string]int{}
	after := ""
	for {
		// Pages in key order: a service adding rows meanwhile seals them
		// under the primary already, and nothing is read twice.
		rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT %s, %s FROM %s WHERE %s > $1 ORDER BY %s LIMIT 500`,
			c.Key, c.Value, c.Table, c.Key, c.Key), after)
		if err != nil {
			return changed, byKey, fmt.Errorf("read %s: %w", c, err)
		}
		type row struct{ key, value string }
		var page []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.key, &r.value); err != nil {
				rows.Close()
				return changed, byKey, fmt.Errorf("read %s: %w", c, err)
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return changed, byKey, fmt.Errorf("read %s: %w", c, err)
		}
		if len(page) == 0 {
			return changed, byKey, nil
		}
		for _, r := range page {
			after = r.key
			next, moved, err := k.Rewrap(r.value, []byte(r.key))
			if err != nil {
				return changed, byKey, fmt.Errorf("%s of %s: %w", c, r.key, err)
			}
			if moved {
				// Only if the row still holds what was read.
				res, err := db.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s = $1 WHERE %s = $2 AND %s = $3`,
					c.Table, c.Value, c.Key, c.Value), next, r.key, r.value)
				if err != nil {
					return changed, byKey, fmt.Errorf("rewrap %s of %s: %w", c, r.key, err)
				}
				if n, _ := res.RowsAffected(); n == 0 {
					next = r.value // changed or deleted meanwhile
				} else {
					changed++
				}
			}
			if id, err := KeyOf(next); err == nil {
				byKey[id]++
			}
		}
	}
}
