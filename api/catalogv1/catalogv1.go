// Package catalogv1 is the contract of the events the catalog service
// publishes, version 1: their types and payloads. Consumers import this
// package, never the catalog service; a change here is a change of the
// published contract (add a v2 type rather than change a v1 payload).
package catalogv1

import (
	"time"

	"github.com/souk-shop/souk/api/money"
)

// The events the catalog publishes. ProductCreated and ProductUpdated carry
// the whole product; PriceChanged, published beside ProductUpdated when the
// price changes, carries the old and new price for consumers that care only
// about prices.
const (
	ProductCreated = "souk.catalog.v1.ProductCreated"
	ProductUpdated = "souk.catalog.v1.ProductUpdated"
	PriceChanged   = "souk.catalog.v1.PriceChanged"
	ProductDeleted = "souk.catalog.v1.ProductDeleted"
)

// Product is the payload of ProductCreated and ProductUpdated.
type Product struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Price       money.Money `json:"price"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
}

// PriceChangedData is the payload of PriceChanged.
type PriceChangedData struct {
	ID  string      `json:"id"`
	Old money.Money `json:"old"`
	New money.Money `json:"new"`
}

// ProductDeletedData is the payload of ProductDeleted.
type ProductDeletedData struct {
	ID string `json:"id"`
}
