package money

import (
	"math"
	"testing"
)

func TestArithmetic(t *testing.T) {
	const m = MaxAmount
	for _, c := range []struct {
		name   string
		got    func() (int64, bool)
		want   int64
		wantOK bool
	}{
		{"1 + 2", func() (int64, bool) { return Add(1, 2) }, 3, true},
		{"max + 0", func() (int64, bool) { return Add(m, 0) }, m, true},
		{"max + 1", func() (int64, bool) { return Add(m, 1) }, 0, false},
		{"a negative amount", func() (int64, bool) { return Add(-1, 5) }, 0, false},
		{"2^62 + 2^62, which wraps in int64", func() (int64, bool) { return Add(1<<62, 1<<62) }, 0, false},
		{"MaxInt64 + 1", func() (int64, bool) { return Add(math.MaxInt64, 1) }, 0, false},
		{"499 × 3", func() (int64, bool) { return Mul(499, 3) }, 1497, true},
		{"max × 1", func() (int64, bool) { return Mul(m, 1) }, m, true},
		{"max × 0", func() (int64, bool) { return Mul(m, 0) }, 0, true},
		{"max/2 × 3", func() (int64, bool) { return Mul(m/2, 3) }, 0, false},
		{"2^62 × 4, which wraps to 0 in int64", func() (int64, bool) { return Mul(1<<62, 4) }, 0, false},
		{"1 × a negative quantity", func() (int64, bool) { return Mul(1, -1) }, 0, false},
		{"a negative price × -1", func() (int64, bool) { return Mul(-5, -1) }, 0, false},
	} {
		got, ok := c.got()
		if got != c.want || ok != c.wantOK {
			t.Errorf("%s = %d, %v; want %d, %v", c.name, got, ok, c.want, c.wantOK)
		}
	}
}
