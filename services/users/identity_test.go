package users

import (
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// TestOneAccountPerAddress: spellings a person cannot tell apart are one
// account.
func TestOneAccountPerAddress(t *testing.T) {
	for _, c := range []struct {
		name, a, b string
	}{
		{"NFC and NFD", norm.NFC.String("josé@example.com"), norm.NFD.String("josé@example.com")},
		{"upper and lower case", "Ada.Lovelace@Example.COM", "ada.lovelace@example.com"},
		{"full-width letters", "ａｄａ@ｅｘａｍｐｌｅ.com", "ada@example.com"},
		{"a Unicode domain and its punycode", "ada@Bücher.de", "ada@xn--bcher-kva.de"},
		{"NFD in the domain", "ada@" + norm.NFD.String("bücher.de"), "ada@bücher.de"},
		{"spaces around", "  ada@example.com\t", "ada@example.com"},
		{"Greek capital and small sigma", "ΣΟΦΙΑ@παράδειγμα.ελ", "σοφια@παράδειγμα.ελ"},
	} {
		ea, msg := canonicalEmail(c.a)
		if msg != "" {
			t.Errorf("%s: canonicalEmail(%q) refused: %s", c.name, c.a, msg)
			continue
		}
		eb, msg := canonicalEmail(c.b)
		if msg != "" {
			t.Errorf("%s: canonicalEmail(%q) refused: %s", c.name, c.b, msg)
			continue
		}
		if ea.Key != eb.Key {
			t.Errorf("%s: canonicalEmail(%q).Key = %q, canonicalEmail(%q).Key = %q; want one key", c.name, c.a, ea.Key, c.b, eb.Key)
		}
		// The canonical form is a fixed point: storing it and reading it
		// back gives the same key.
		if again, msg := canonicalEmail(ea.Display); msg != "" || again.Key != ea.Key || again.Display != ea.Display {
			t.Errorf("%s: canonicalEmail(%q) = %+v, %q; want itself", c.name, ea.Display, again, msg)
		}
	}
}

// TestEmailAttacks: addresses made to look like another, or to hide
// something, are refused; real addresses in many scripts are not.
func TestEmailAttacks(t *testing.T) {
	for _, c := range []struct {
		name, email string
		ok          bool
		display     string // when ok and not the input
	}{
		{"plain", "admin@souk.local", true, ""},
		{"Cyrillic а in a Latin local part", "\u0430dmin@souk.local", false, ""},
		{"Greek ο in a Latin domain", "admin@s\u03bfuk.local", false, ""},
		{"an all-Cyrillic label under a Latin one", "admin@\u0455\u043euk.local", false, ""},
		{"a Cyrillic local part at a Latin domain", "\u0430\u0441\u0435@example.com", false, ""},
		{"Cherokee Ꭺ among Latin", "\u13aadmin@souk.local", false, ""},
		{"right-to-left override", "admin\u202e@souk.local", false, ""},
		{"left-to-right isolate", "\u2066admin@souk.local", false, ""},
		{"zero-width space", "ad\u200bmin@souk.local", false, ""},
		{"zero-width joiner", "ad\u200dmin@souk.local", false, ""},
		{"soft hyphen", "ad\u00admin@souk.local", false, ""},
		{"NUL", "admin\x00@souk.local", false, ""},
		{"a line feed (header injection)", "admin@souk.local\nBcc: eve@evil.example", false, ""},
		{"a space", "ad min@souk.local", false, ""},
		{"a quoted local part", `"admin"@souk.local`, false, ""},
		{"a leading dot", ".admin@souk.local", false, ""},
		{"two dots", "ad..min@souk.local", false, ""},
		{"a trailing dot in the domain", "admin@souk.local.", false, ""},
		{"an empty label", "admin@souk..local", false, ""},
		{"an IP address", "admin@127.0.0.1", false, ""},
		{"a domain literal", "admin@[127.0.0.1]", false, ""},
		{"a single-label domain", "admin@localhost", false, ""},
		{"an underscore in the domain", "admin@souk_shop.local", false, ""},
		{"a local part of 65 bytes", strings.Repeat("a", 65) + "@example.com", false, ""},
		{"no @", "admin.souk.local", false, ""},
		{"nothing before @", "@souk.local", false, ""},
		{"two @, the last decides", "a@b@souk.local", false, ""},
		{"a display name", "Admin <admin@souk.local>", false, ""},
		{"full-width @ is not @", "admin\uff20souk.local", false, ""},
		{"Cyrillic throughout", "\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", true, ""},
		{"Greek throughout", "σοφία@παράδειγμα.ελ", true, ""},
		{"Latin with Japanese", "山田.taro@example.jp", true, ""},
		{"Latin with Han and kana", "やまだ山田@example.jp", true, ""},
		{"Latin with Arabic", "علي@example.com", true, ""},
		{"accents", "zoë.çelik@example.com", true, ""},
		{"plus addressing", "Ada+Shop@Example.com", true, "ada+shop@example.com"},
		{"a Unicode domain shows in Unicode", "ada@XN--BCHER-KVA.de", true, "ada@bücher.de"},
	} {
		e, msg := canonicalEmail(c.email)
		switch {
		case c.ok && msg != "":
			t.Errorf("%s: canonicalEmail(%q) refused: %s", c.name, c.email, msg)
		case !c.ok && msg == "":
			t.Errorf("%s: canonicalEmail(%q) = %+v, want it refused", c.name, c.email, e)
		case c.ok && c.display != "" && e.Display != c.display:
			t.Errorf("%s: canonicalEmail(%q).Display = %q, want %q", c.name, c.email, e.Display, c.display)
		}
	}
}

// TestNameAttacks: names with characters that hide or reorder text are
// refused; names are stored in one form.
func TestNameAttacks(t *testing.T) {
	for _, c := range []struct {
		name, in, want string // want "" for refused
	}{
		{"plain", "Ada Lovelace", "Ada Lovelace"},
		{"spaces trimmed and collapsed", "  Ada   King ", "Ada King"},
		{"NFD becomes NFC", norm.NFD.String("Zoë Çelik"), "Zoë Çelik"},
		{"full-width letters", "Ａｄａ", "Ada"},
		{"right-to-left script", "علي", "علي"},
		{"right-to-left override", "Ada\u202eecalevoL", ""},
		{"right-to-left embedding", "\u202bAda", ""},
		{"first strong isolate", "Ada\u2068x\u2069", ""},
		{"Arabic letter mark", "Ada\u061c", ""},
		{"left-to-right mark", "Ada\u200e", ""},
		{"zero-width space", "Ad\u200ba", ""},
		{"byte order mark", "\ufeffAda", ""},
		{"NUL", "Ada\x00", ""},
		{"line feed", "Ada\nLovelace", ""},
		{"escape (terminal codes)", "Ada\x1b[31m", ""},
		{"DEL", "Ada\x7f", ""},
		{"tag characters", "Ada\U000e0041", ""},
		{"only spaces", "   ", ""},
		{"201 characters", strings.Repeat("é", 201), ""},
	} {
		got, msg := canonicalName(c.in)
		switch {
		case c.want == "" && msg == "":
			t.Errorf("%s: canonicalName(%q) = %q, want it refused", c.name, c.in, got)
		case c.want != "" && (msg != "" || got != c.want):
			t.Errorf("%s: canonicalName(%q) = %q, %q; want %q", c.name, c.in, got, msg, c.want)
		}
	}
}
