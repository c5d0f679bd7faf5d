package catalog

import (
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/platform/problem"
)

// TestProductTextAttacks: names and descriptions that would hide or
// reorder what a page shows are refused, naming the field; line breaks
// and tabs are allowed in descriptions only.
func TestProductTextAttacks(t *testing.T) {
	for _, c := range []struct {
		name, pname, desc string
		field             string // the field refused, "" if accepted
	}{
		{"plain", "Brass Lamp", "warm light", ""},
		{"a description in paragraphs", "Brass Lamp", "warm light\n\n\tbrass, 40 cm", ""},
		{"emoji with joiners", "Lamp 👩\u200d🔧", "for 👨\u200d👩\u200d👧", ""},
		{"right-to-left text", "مصباح", "ضوء دافئ", ""},
		{"right-to-left override in a name", "Lamp\u202eexe.", "", "name"},
		{"right-to-left override in a description", "Lamp", "see \u202egnp.exe", "description"},
		{"isolates in a description", "Lamp", "\u2067price\u2069", "description"},
		{"left-to-right mark in a name", "\u200eLamp", "", "name"},
		{"a line feed in a name", "Lamp\nSALE", "", "name"},
		{"a tab in a name", "Lamp\tSALE", "", "name"},
		{"NUL in a description", "Lamp", "warm\x00light", "description"},
		{"escape codes in a description", "Lamp", "\x1b[2Jwarm light", "description"},
		{"a bare carriage return", "Lamp", "warm\rlight", "description"},
		{"a vertical tab", "Lamp", "warm\vlight", "description"},
		{"C1 control", "La\u0085mp", "", "name"},
		{"zero-width space", "La\u200bmp", "", "name"},
		{"byte order mark", "Lamp", "\ufeffwarm", "description"},
		{"line separator", "Lamp", "warm\u2028light", "description"},
		{"private use", "Lamp\ue000", "", "name"},
		{"a noncharacter", "Lamp", "warm\uffff", "description"},
		{"invalid UTF-8, as JSON decodes it", "Lamp\ufffd", "", "name"},
		{"tag characters", "Lamp\U000e0041", "", "name"},
	} {
		p := Product{Name: c.pname, Description: c.desc, Price: money.Money{Amount: 100, Currency: "EUR"}}
		err := p.validate()
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: validate(%q, %q) = %v, want it accepted", c.name, c.pname, c.desc, err)
			}
			continue
		}
		pe, ok := err.(*problem.Error)
		if !ok || pe.Code != problem.Invalid || len(pe.Fields) != 1 || pe.Fields[0].Field != c.field {
			t.Errorf("%s: validate(%q, %q) = %v, want a field error on %s", c.name, c.pname, c.desc, err, c.field)
		}
	}
}

// TestProductTextIsNormalized: a product's text is stored in NFC, and a
// CR LF becomes a line feed.
func TestProductTextIsNormalized(t *testing.T) {
	p := Product{Name: norm.NFD.String(" Crème lamp "), Description: norm.NFD.String("warm\r\nlight, café"), Price: money.Money{Amount: 1, Currency: "EUR"}}
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	if p.Name != "Crème lamp" || p.Description != "warm\nlight, café" || !norm.NFC.IsNormalString(p.Description) {
		t.Fatalf("validate left name %q, description %q", p.Name, p.Description)
	}
	long := Product{Name: "Lamp", Description: strings.Repeat("é", 4001), Price: money.Money{Amount: 1, Currency: "EUR"}}
	if err := long.validate(); problem.CodeOf(err) != problem.Invalid {
		t.Fatalf("a description of 4001 characters: %v", err)
	}
}
