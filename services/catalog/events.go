package catalog

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

// PriceChangedData is the payload of PriceChanged.
type PriceChangedData struct {
	ID  string `json:"id"`
	Old Money  `json:"old"`
	New Money  `json:"new"`
}

// ProductDeletedData is the payload of ProductDeleted.
type ProductDeletedData struct {
	ID string `json:"id"`
}
