// Package check audits the order saga across the databases of orders,
// inventory and payments: the invariants that no crash, retry or race may
// break. `souk check` prints its report; the saga's tests run it.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/platform/store"
)

// Databases are the three services' databases.
type Databases struct {
	Orders, Inventory, Payments *store.DB
}

// Violation is a broken invariant.
type Violation struct {
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// Report is what Run found.
type Report struct {
	Orders     int         `json:"orders"`
	Confirmed  int         `json:"confirmed"`
	Cancelled  int         `json:"cancelled"`
	Open       int         `json:"open"`
	Products   int         `json:"products"`
	Captures   int         `json:"captures"`
	Refunds    int         `json:"refunds"`
	Violations []Violation `json:"violations"`
}

// The rules.
const (
	ConfirmedWithoutCapture = "no order confirmed without a captured payment"
	DoubleCapture           = "at most one capture per order"
	CancelledCaptured       = "no capture for a cancelled order without a refund"
	NegativeStock           = "stock never negative"
	StockBalance            = "per product, received = available + reserved + sold"
	ReservedBalance         = "per product, reserved = what open reservations hold, sold = what committed ones hold"
	Overdue                 = "every order past its deadline is terminal"
	TotalMismatch           = "each order's total is the sum of its lines, within money.MaxAmount"
	CaptureAmount           = "a capture takes the order's total, no more, no less"
)

// Grace is how long past its deadline an order may take to be seen
// cancelled: the deadline sweep runs twice a second.
const Grace = 5 * time.Second

// Run checks every invariant as of now.
func Run(ctx context.Context, dbs Databases, now time.Time) (Report, error) {
	var r Report
	bad := func(rule, format string, args ...any) {
		r.Violations = append(r.Violations, Violation{Rule: rule, Detail: fmt.Sprintf(format, args...)})
	}

	// What the payment provider did, per order: the ground truth of money.
	captures, refunds := map[string]int{}, map[string]int{}
	captured := map[string]money.Money{} // what a capture took
	rows, err := dbs.Payments.QueryContext(ctx, `SELECT order_id, operation, amount, currency FROM simulated_provider_operations
		WHERE (operation = 'capture' AND outcome = 'captured') OR (operation = 'refund' AND outcome = 'refunded')`)
	if err != nil {
		return r, fmt.Errorf("payments: %w", err)
	}
	for rows.Next() {
		var order, op string
		var m money.Money
		if err := rows.Scan(&order, &op, &m.Amount, &m.Currency); err != nil {
			rows.Close()
			return r, err
		}
		if op == "capture" {
			captures[order]++
			captured[order] = m
			r.Captures++
		} else {
			refunds[order]++
			r.Refunds++
		}
	}
	rows.Close()
	for order, n := range captures {
		if n > 1 {
			bad(DoubleCapture, "order %s was captured %d times", order, n)
		}
	}

	totals, err := orderTotals(ctx, dbs.Orders, bad)
	if err != nil {
		return r, err
	}
	for order, m := range captured {
		if total, ok := totals[order]; ok && m != total {
			bad(CaptureAmount, "order %s: captured %d %s of a total of %d %s", order, m.Amount, m.Currency, total.Amount, total.Currency)
		}
	}

	rows, err = dbs.Orders.QueryContext(ctx, `SELECT id, status, deadline_at FROM orders`)
	if err != nil {
		return r, fmt.Errorf("orders: %w", err)
	}
	for rows.Next() {
		var id, status string
		var deadline time.Time
		if err := rows.Scan(&id, &status, &deadline); err != nil {
			rows.Close()
			return r, err
		}
		r.Orders++
		switch status {
		case "confirmed":
			r.Confirmed++
			if captures[id] == 0 || refunds[id] > 0 {
				bad(ConfirmedWithoutCapture, "order %s is confirmed with %d captures and %d refunds", id, captures[id], refunds[id])
			}
		case "cancelled":
			r.Cancelled++
			if captures[id] > 0 && refunds[id] == 0 {
				bad(CancelledCaptured, "order %s is cancelled, captured and not refunded", id)
			}
		default:
			r.Open++
			if deadline.Add(Grace).Before(now) {
				bad(Overdue, "order %s is %s, %s past its deadline", id, status, now.Sub(deadline).Round(time.Second))
			}
		}
	}
	rows.Close()

	held := map[string][2]int64{} // product → reserved, sold by the reservations
	rows, err = dbs.Inventory.QueryContext(ctx, `SELECT i.product_id, r.status, i.quantity FROM reservation_items i
		JOIN reservations r ON r.order_id = i.order_id WHERE r.status IN ('reserved', 'committed')`)
	if err != nil {
		return r, fmt.Errorf("inventory: %w", err)
	}
	for rows.Next() {
		var product, status string
		var q int64
		if err := rows.Scan(&product, &status, &q); err != nil {
			rows.Close()
			return r, err
		}
		h := held[product]
		if status == "reserved" {
			h[0] += q
		} else {
			h[1] += q
		}
		held[product] = h
	}
	rows.Close()
	rows, err = dbs.Inventory.QueryContext(ctx, `SELECT product_id, available, reserved, sold, received FROM stock`)
	if err != nil {
		return r, fmt.Errorf("inventory: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var product string
		var available, reserved, sold, received int64
		if err := rows.Scan(&product, &available, &reserved, &sold, &received); err != nil {
			return r, err
		}
		r.Products++
		if available < 0 || reserved < 0 || sold < 0 {
			bad(NegativeStock, "product %s: available %d, reserved %d, sold %d", product, available, reserved, sold)
		}
		if received != available+reserved+sold {
			bad(StockBalance, "product %s: received %d ≠ available %d + reserved %d + sold %d", product, received, available, reserved, sold)
		}
		if h := held[product]; h[0] != reserved || h[1] != sold {
			bad(ReservedBalance, "product %s: reserved %d, sold %d, but reservations hold %d and %d", product, reserved, sold, h[0], h[1])
		}
	}
	return r, rows.Err()
}

// orderTotals reads every order's total from the first entry of its log,
// where orders wrote its lines at the prices it charged, and reports each
// total that is not the sum of the lines.
func orderTotals(ctx context.Context, orders *store.DB, bad func(rule, format string, args ...any)) (map[string]money.Money, error) {
	rows, err := orders.QueryContext(ctx, `SELECT order_id, data FROM order_events WHERE seq = 1`)
	if err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	defer rows.Close()
	totals := map[string]money.Money{}
	for rows.Next() {
		var id, data string
		if err := rows.Scan(&id, &data); err != nil {
			return nil, err
		}
		var placed struct {
			Items []struct {
				Quantity  int64       `json:"quantity"`
				UnitPrice money.Money `json:"unit_price"`
			} `json:"items"`
			Total money.Money `json:"total"`
		}
		if err := json.Unmarshal([]byte(data), &placed); err != nil {
			bad(TotalMismatch, "order %s: its first log entry does not parse: %v", id, err)
			continue
		}
		totals[id] = placed.Total
		var sum int64
		ok := true
		for _, it := range placed.Items {
			var line int64
			if line, ok = money.Mul(it.UnitPrice.Amount, it.Quantity); ok {
				sum, ok = money.Add(sum, line)
			}
			if !ok || it.UnitPrice.Currency != placed.Total.Currency {
				ok = false
				break
			}
		}
		if !ok || sum != placed.Total.Amount {
			bad(TotalMismatch, "order %s: a total of %d %s for lines that make %s", id, placed.Total.Amount, placed.Total.Currency, describe(sum, ok))
		}
	}
	return totals, rows.Err()
}

func describe(sum int64, ok bool) string {
	if !ok {
		return "more than money.MaxAmount, or mix currencies"
	}
	return fmt.Sprint(sum)
}
