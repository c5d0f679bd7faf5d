package inventory

import "time"

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
