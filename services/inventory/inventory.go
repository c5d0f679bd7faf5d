// Package inventory is the inventory service: stock per product, and
// reservations that the order saga makes, commits and releases. Stock never
// goes negative: every change is a conditional update, and the table checks
// it too.
package inventory

import (
	"embed"
	"io/fs"
	"time"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "inventory"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the service's goose migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Stock is a product's stock.
type Stock struct {
	ProductID string `json:"product_id"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
	Sold      int64  `json:"sold"`
}

// Reservation statuses.
const (
	Reserved  = "reserved"
	Committed = "committed"
	Released  = "released"
	Expired   = "expired"
	Failed    = "failed"
	Tombstone = "tombstone" // released before it was asked for: a late request fails
)

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
