// Package secrets encrypts what a service must keep but nobody may read
// from a copy of its database: card numbers, signing-key seeds.
//
// It is envelope encryption. Each value gets a data key of its own (AES-256,
// random); the value is sealed with it (AES-256-GCM), and the data key is
// sealed with the keyring's primary key-encryption key (KEK). Only the
// sealed data key names its KEK, so rotating KEKs re-wraps data keys and
// never touches the values. Both seals are bound to the value's context
// (its row's id, say): a sealed value copied to another row does not open.
//
// A keyring is a small text file (mode 0600; never open to every user), one
// KEK per line as
// "<id> <base64 of 32 bytes>", the primary first:
//
//	k20261126a1b2c3d4 3q2+7w...=
//	k20260101e5f60718 Zm9vYmFy...=
//
// It is read again when it changes, so `souk secrets rotate` reaches
// running processes without a restart. It is a file, not an environment
// variable: a file mounted from a secret store can change under a running
// process, and does not leak into child processes and /proc/PID/environ.
package secrets

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"
)

// prefix starts every sealed value, naming the format.
const prefix = "souk1"

// ErrNoKey means a value was sealed with a KEK the keyring does not hold.
var ErrNoKey = errors.New("secrets: sealed with a key the keyring does not hold")

// kek is one key-encryption key.
type kek struct {
	id   string
	raw  []byte
	aead cipher.AEAD
}

// Keyring holds KEKs: the first seals new data keys, every one opens.
// It is safe for concurrent use.
type Keyring struct {
	path string

	mu    sync.RWMutex
	keys  []kek
	stamp stamp // of the file when last read
}

// stamp tells whether a file changed since it was read.
type stamp struct {
	mod  time.Time
	size int64
}

// Load reads a keyring file.
func Load(path string) (*Keyring, error) {
	k := &Keyring{path: path}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Ensure loads the keyring file at path, first making it with one new key
// (mode 0600) if there is none. Two processes ensuring one path at once
// end up with the same keyring.
func Ensure(path string) (*Keyring, error) {
	if _, err := os.Stat(path); err == nil {
		return Load(path)
	}
	// Written whole under another name, then linked: a link fails if the
	// name exists, so the first process's keyring wins and nobody reads a
	// half-written one.
	var tag [8]byte
	rand.Read(tag[:])
	tmp := path + "." + hex.EncodeToString(tag[:])
	if err := os.WriteFile(tmp, []byte(header+newKeyLine()), 0o600); err != nil {
		return nil, fmt.Errorf("secrets: make the keyring: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("secrets: make the keyring: %w", err)
	}
	return Load(path)
}

const header = "# Souk's key-encryption keys, the primary first. Keep this file secret\n# and backed up: without it, what was sealed with its keys is lost.\n"

// Path is the keyring's file.
func (k *Keyring) Path() string { return k.path }

// Primary is the id of the KEK that seals new data keys.
func (k *Keyring) Primary() string {
	k.refresh()
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[0].id
}

// IDs are the ids of the keyring's KEKs, the primary first.
func (k *Keyring) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// Seal encrypts plaintext under a new data key, bound to context.
func (k *Keyring) Seal(plaintext, context []byte) (string, error) {
	dek := make([]byte, 32)
	rand.Read(dek)
	data, err := seal(dek, plaintext, context)
	if err != nil {
		return "", err
	}
	k.refresh()
	k.mu.RLock()
	primary := k.keys[0]
	k.mu.RUnlock()
	return format(primary, dek, data, context), nil
}

// Open decrypts a sealed value bound to context.
func (k *Keyring) Open(sealed string, context []byte) ([]byte, error) {
	id, dek, data, err := k.unwrap(sealed, context)
	if err != nil {
		return nil, err
	}
	plain, err := open(dek, data, context)
	if err != nil {
		return nil, fmt.Errorf("secrets: the value sealed with %s does not open in this context: %w", id, err)
	}
	return plain, nil
}

// Rewrap seals a value's data key again with the primary KEK, leaving the
// value's ciphertext as it is. It reports whether anything changed: a value
// already under the primary is returned as it came.
func (k *Keyring) Rewrap(sealed string, context []byte) (string, bool, error) {
	id, dek, data, err := k.unwrap(sealed, context)
	if err != nil {
		return "", false, err
	}
	k.mu.RLock()
	primary := k.keys[0]
	k.mu.RUnlock()
	if id == primary.id {
		return sealed, false, nil
	}
	return format(primary, dek, data, context), true, nil
}

// KeyOf is the id of the KEK that sealed a value's data key.
func KeyOf(sealed string) (string, error) {
	parts := strings.Split(sealed, ".")
	if len(parts) != 4 || parts[0] != prefix {
		return "", errors.New("secrets: not a sealed value")
	}
	return parts[1], nil
}

// unwrap parses a sealed value and opens its data key.
func (k *Keyring) unwrap(sealed string, context []byte) (id string, dek, data []byte, err error) {
	parts := strings.Split(sealed, ".")
	if len(parts) != 4 || parts[0] != prefix {
		return "", nil, nil, errors.New("secrets: not a sealed value")
	}
	id = parts[1]
	wrapped, err1 := base64.RawURLEncoding.DecodeString(parts[2])
	data, err2 := base64.RawURLEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return "", nil, nil, errors.New("secrets: not a sealed value")
	}
	key, ok := k.find(id)
	if !ok && k.reload() == nil {
		key, ok = k.find(id) // rotated by another process since read
	}
	if !ok {
		return "", nil, nil, fmt.Errorf("%w (%s)", ErrNoKey, id)
	}
	dek, err = openWith(key.aead, wrapped, wrapContext(id, context))
	if err != nil {
		return "", nil, nil, fmt.Errorf("secrets: the data key sealed with %s does not open in this context: %w", id, err)
	}
	return id, dek, data, nil
}

func (k *Keyring) find(id string) (kek, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.id == id {
			return key, true
		}
	}
	return kek{}, false
}

// refresh reads the file again if it changed since it was read. A file
// that cannot be read keeps the keys already held.
func (k *Keyring) refresh() {
	fi, err := os.Stat(k.path)
	if err != nil {
		return
	}
	k.mu.RLock()
	same := k.stamp == stamp{fi.ModTime(), fi.Size()}
	k.mu.RUnlock()
	if !same {
		_ = k.reload()
	}
}

func (k *Keyring) reload() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("secrets: the keyring: %w", err)
	}
	// Group access is allowed: a Kubernetes Secret mounted for a pod's
	// fsGroup is group-readable. Anyone else's is not.
	if fi.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("secrets: the keyring %s is open to every user (mode %o): chmod 600 it", k.path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("secrets: the keyring: %w", err)
	}
	keys, err := parse(b)
	if err != nil {
		return fmt.Errorf("secrets: the keyring %s: %w", k.path, err)
	}
	k.mu.Lock()
	k.keys, k.stamp = keys, stamp{fi.ModTime(), fi.Size()}
	k.mu.Unlock()
	return nil
}

// parse reads a keyring's lines.
func parse(b []byte) ([]kek, error) {
	var keys []kek
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, enc, ok := strings.Cut(line, " ")
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if !ok || !validID(id) || err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("line %d: want \"<id> <base64 of 32 bytes>\"", n)
		}
		for _, other := range keys {
			if other.id == id {
				return nil, fmt.Errorf("line %d: key %s is there twice", n, id)
			}
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, err
		}
		keys = append(keys, kek{id: id, raw: raw, aead: aead})
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in it")
	}
	return keys, nil
}

// validID says whether id can name a key: letters and digits only, as
// it is written between the dots of sealed values.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Rotate puts a new primary KEK at the head of the keyring file, keeping
// the others so that everything sealed stays open, and returns its id.
func Rotate(path string) (string, error) {
	k, err := Load(path)
	if err != nil {
		return "", err
	}
	line := newKeyLine()
	id, _, _ := strings.Cut(line, " ")
	k.mu.RLock()
	lines := []string{line}
	for _, key := range k.keys {
		lines = append(lines, keyLine(key.id, key.raw))
	}
	k.mu.RUnlock()
	return id, writeFile(path, header+strings.Join(lines, ""))
}

// Retire removes from the keyring file every KEK but the primary and those
// in keep, and returns the ids removed.
func Retire(path string, keep map[string]bool) ([]string, error) {
	k, err := Load(path)
	if err != nil {
		return nil, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	var lines []string
	var gone []string
	for i, key := range k.keys {
		if i == 0 || keep[key.id] {
			lines = append(lines, keyLine(key.id, key.raw))
		} else {
			gone = append(gone, key.id)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	return gone, writeFile(path, header+strings.Join(lines, ""))
}

// writeFile replaces a keyring file whole: a reader sees the old one or the
// new one, never half of it.
func writeFile(path, text string) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return fmt.Errorf("secrets: write the keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("secrets: write the keyring: %w", err)
	}
	return nil
}

// newKeyLine makes a KEK, as a keyring line. Its id starts with the day it
// was made, so that a keyring reads oldest last.
func newKeyLine() string {
	raw := make([]byte, 32)
	rand.Read(raw)
	var tag [4]byte
	rand.Read(tag[:])
	return keyLine("k"+time.Now().UTC().Format("20060102")+hex.EncodeToString(tag[:]), raw)
}

func keyLine(id string, raw []byte) string {
	return id + " " + base64.StdEncoding.EncodeToString(raw) + "\n"
}

// format writes a sealed value: the format, the KEK's id, the wrapped data
// key, the sealed value.
func format(key kek, dek, data, context []byte) string {
	wrapped := sealWith(key.aead, dek, wrapContext(key.id, context))
	return prefix + "." + key.id + "." + base64.RawURLEncoding.EncodeToString(wrapped) + "." + base64.RawURLEncoding.EncodeToString(data)
}

// wrapContext binds a wrapped data key to its KEK's id as well as to the
// value's context.
func wrapContext(id string, context []byte) []byte {
	return append([]byte(prefix+"."+id+"."), context...)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(key, plaintext, context []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return sealWith(aead, plaintext, context), nil
}

func open(key, data, context []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return openWith(aead, data, context)
}

// sealWith encrypts with a random nonce, written before the ciphertext.
func sealWith(aead cipher.AEAD, plaintext, context []byte) []byte {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, context)
}

func openWith(aead cipher.AEAD, data, context []byte) ([]byte, error) {
	if len(data) < aead.NonceSize() {
		return nil, errors.New("too short")
	}
	return aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], context)
}
