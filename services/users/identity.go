package users

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/secure/precis"
)

// One identity per person: an email address has one canonical form, and
// two addresses are the same account when their canonical forms are equal.
// What a person cannot tell apart, the shop does not tell apart either, and
// what would fool a person is refused.
//
//   - The domain goes through IDNA's lookup profile (UTS #46 mapping, so
//     full-width letters and capitals fold; the Bidi and joiner rules;
//     letters, digits and hyphens only) to its ASCII form, punycode for
//     a non-ASCII name: BÜCHER.de and xn--bcher-kva.de are one domain.
//     The address shows the domain in Unicode; the key it is compared by
//     holds the ASCII form.
//   - The local part goes through PRECIS's UsernameCaseMapped profile (RFC
//     8265): full-width letters to normal width, lower case, NFC (so the
//     NFC and NFD spellings of josé are one), and letters, digits and
//     ASCII symbols only: no spaces, controls, bidi controls or invisible
//     joiners. Mail servers may treat the local part's case as significant
//     (RFC 5321); none that people use does, and Ada@ and ada@ being two
//     accounts would be the confusion this rules out. It must then be a
//     dot-atom (RFC 5322: no quotes, no leading, trailing or double dots).
//   - The whole address may not mix scripts that look alike: UTS #39's
//     "moderately restrictive" level. One script (Common characters such as
//     digits and punctuation go with any), or Latin with Han and Japanese
//     kana, Han and Bopomofo, or Han and Hangul, or Latin with one other
//     script that is not Cyrillic, Greek or Cherokee, whose letters copy
//     Latin ones. So аdmin@souk.local, whose а is Cyrillic, is refused,
//     and so is ѕоuk.local, an all-Cyrillic label under a Latin one.
//
// Not caught: letters of one script that look like others of the same
// script (a dotless ı among Latin letters); UTS #39's confusable skeletons
// would, with data that Go's libraries do not carry.

// maxEmailBytes is the longest address SMTP carries (RFC 5321's path, less
// the angle brackets); maxLocalBytes the longest local part.
const (
	maxEmailBytes = 254
	maxLocalBytes = 64
)

// email is an address in its canonical forms.
type email struct {
	// Display is what the user sees: the canonical local part and the
	// domain in Unicode.
	Display string
	// Key is what accounts are compared by: the canonical local part and
	// the domain in ASCII.
	Key string
}

// canonicalEmail returns raw's canonical forms, or why raw is not an
// address Souk accepts.
func canonicalEmail(raw string) (email, string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return email{}, "is required"
	}
	if len(raw) > 4*maxEmailBytes {
		return email{}, "must be at most 254 characters"
	}
	at := strings.LastIndexByte(raw, '@')
	if at < 0 {
		return email{}, "must be an address like ada@example.com"
	}
	local, msg := canonicalLocal(raw[:at])
	if msg != "" {
		return email{}, msg
	}
	ascii, unicodeDomain, msg := canonicalDomain(raw[at+1:])
	if msg != "" {
		return email{}, msg
	}
	e := email{Display: local + "@" + unicodeDomain, Key: local + "@" + ascii}
	if len(e.Key) > maxEmailBytes {
		return email{}, "must be at most 254 characters"
	}
	if !singleScriptFamily(local + unicodeDomain) {
		return email{}, "must not mix scripts that look alike (such as Latin and Cyrillic letters)"
	}
	return e, ""
}

// canonicalLocal applies PRECIS UsernameCaseMapped to the local part and
// checks that the result is a dot-atom.
func canonicalLocal(s string) (string, string) {
	if s == "" {
		return "", "must be an address like ada@example.com"
	}
	local, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		return "", "the part before @ may hold letters, digits and . ! # $ % & ' * + - / = ? ^ _ ` { | } ~ only"
	}
	if len(local) > maxLocalBytes {
		return "", "the part before @ must be at most 64 bytes"
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", "the part before @ must not start or end with a dot or hold two in a row"
	}
	for _, r := range local {
		if r < utf8.RuneSelf && !isAtext(byte(r)) && r != '.' {
			return "", "the part before @ may hold letters, digits and . ! # $ % & ' * + - / = ? ^ _ ` { | } ~ only"
		}
	}
	return local, ""
}

// isAtext reports whether c may appear in a dot-atom (RFC 5322, 3.2.3).
func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// canonicalDomain returns the domain's ASCII (punycode) and Unicode forms
// under IDNA's lookup profile: a host name of at least two labels, the last
// not all digits (no IP addresses).
func canonicalDomain(s string) (ascii, uni, msg string) {
	const bad = "must be an address like ada@example.com"
	ascii, err := idna.Lookup.ToASCII(s)
	if err != nil || ascii == "" {
		return "", "", "the domain must be a host name like example.com"
	}
	ascii = strings.ToLower(ascii)
	if len(ascii) > 253 {
		return "", "", "the domain must be at most 253 characters"
	}
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", "", bad
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", "", "the domain must be a host name like example.com"
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", "", "the domain must be a host name, not an IP address"
	}
	uni, err = idna.Lookup.ToUnicode(ascii)
	if err != nil {
		return "", "", "the domain must be a host name like example.com"
	}
	return ascii, uni, ""
}

// Scripts whose letters copy Latin ones: UTS #39 lets Latin mix with any
// recommended script but Cyrillic and Greek; Cherokee is not recommended
// and is as Latin-like.
var latinLookalikes = map[string]bool{"Cyrillic": true, "Greek": true, "Cherokee": true}

// singleScriptFamily reports whether s meets UTS #39's moderately
// restrictive level (see above).
func singleScriptFamily(s string) bool {
	scripts := map[string]bool{}
	for _, r := range s {
		if sc := scriptOf(r); sc != "" {
			scripts[sc] = true
		}
	}
	if len(scripts) <= 1 {
		return true
	}
	latin := scripts["Latin"]
	delete(scripts, "Latin")
	within := func(allowed ...string) bool {
		for sc := range scripts {
			found := false
			for _, a := range allowed {
				found = found || sc == a
			}
			if !found {
				return false
			}
		}
		return true
	}
	if within("Han", "Hiragana", "Katakana") || within("Han", "Bopomofo") || within("Han", "Hangul") {
		return true
	}
	if latin && len(scripts) == 1 {
		for sc := range scripts {
			return !latinLookalikes[sc]
		}
	}
	return false
}

// scriptOf returns the Unicode script of r, or "" for Common and Inherited
// characters (digits, punctuation, combining marks), which go with any.
func scriptOf(r rune) string {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return "Latin"
		}
		return ""
	}
	if unicode.Is(unicode.Common, r) || unicode.Is(unicode.Inherited, r) {
		return ""
	}
	if unicode.Is(unicode.Latin, r) {
		return "Latin"
	}
	for name, table := range unicode.Scripts {
		if unicode.Is(table, r) {
			return name
		}
	}
	return "Unknown"
}

// canonicalName returns a person's name as stored, under PRECIS's Nickname
// profile (RFC 8266): spaces trimmed and collapsed, NFKC (so full-width
// and ligature letters become the usual ones); control characters, bidi
// controls (which reorder what is shown: "evil\u202Egpj.exe") and other
// invisible characters are refused.
func canonicalName(raw string) (string, string) {
	if strings.TrimSpace(raw) == "" {
		return "", "is required"
	}
	if len(raw) > 4*200 {
		return "", "must be at most 200 characters"
	}
	name, err := precis.Nickname.String(raw)
	if err != nil {
		return "", "must not contain control characters, bidi controls or invisible characters"
	}
	if utf8.RuneCountInString(name) > 200 {
		return "", "must be at most 200 characters"
	}
	return name, ""
}
