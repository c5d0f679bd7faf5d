package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := Ensure(filepath.Join(t.TempDir(), "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	card, ctx := []byte("4242424242424242"), []byte("pm_1")
	sealed, err := k.Seal(card, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, string(card)) {
		t.Fatalf("sealed value %q holds the plaintext", sealed)
	}
	if id, _ := KeyOf(sealed); id != k.Primary() {
		t.Errorf("KeyOf = %q, want the primary %q", id, k.Primary())
	}
	again, _ := k.Seal(card, ctx)
	if again == sealed {
		t.Error("sealing twice gave the same value: data keys or nonces repeat")
	}
	got, err := k.Open(sealed, ctx)
	if err != nil || string(got) != string(card) {
		t.Fatalf("Open = %q, %v; want %q", got, err, card)
	}

	// What must not open.
	tampered := []byte(sealed)
	tampered[len(tampered)-3] ^= 1
	for _, c := range []struct {
		name, sealed, context string
	}{
		{"another row's context", sealed, "pm_2"},
		{"no context", sealed, ""},
		{"a flipped bit", string(tampered), "pm_1"},
		{"another KEK's id", strings.Replace(sealed, k.Primary(), "k1", 1), "pm_1"},
		{"not sealed at all", "4242424242424242", "pm_1"},
		{"a truncated value", sealed[:strings.LastIndex(sealed, ".")+3], "pm_1"},
	} {
		if got, err := k.Open(c.sealed, []byte(c.context)); err == nil {
			t.Errorf("%s: Open = %q, want an error", c.name, got)
		}
	}
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	writer, err := Ensure(path)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := Load(path) // another process with the same file
	if err != nil {
		t.Fatal(err)
	}
	old := writer.Primary()
	sealed, _ := writer.Seal([]byte("seed"), []byte("key-1"))

	id, err := Rotate(path)
	if err != nil {
		t.Fatal(err)
	}
	if id == old {
		t.Fatal("Rotate kept the primary")
	}
	if got := reader.Primary(); got != id {
		t.Errorf("a running keyring's primary after Rotate = %q, want the new %q", got, id)
	}
	if got, err := reader.Open(sealed, []byte("key-1")); err != nil || string(got) != "seed" {
		t.Fatalf("after Rotate, Open of a value under the old KEK = %q, %v", got, err)
	}

	rewrapped, changed, err := reader.Rewrap(sealed, []byte("key-1"))
	if err != nil || !changed {
		t.Fatalf("Rewrap = %v, %v; want a change", changed, err)
	}
	if k, _ := KeyOf(rewrapped); k != id {
		t.Errorf("rewrapped under %q, want %q", k, id)
	}
	if a, b := sealed[strings.LastIndex(sealed, "."):], rewrapped[strings.LastIndex(rewrapped, "."):]; a != b {
		t.Error("Rewrap changed the value's ciphertext; it must only re-wrap the data key")
	}
	if _, changed, _ := reader.Rewrap(rewrapped, []byte("key-1")); changed {
		t.Error("Rewrap of a value under the primary changed it")
	}
	if _, _, err := reader.Rewrap(sealed, []byte("key-2")); err == nil {
		t.Error("Rewrap in the wrong context succeeded")
	}

	gone, err := Retire(path, nil)
	if err != nil || len(gone) != 1 || gone[0] != old {
		t.Fatalf("Retire = %v, %v; want [%s]", gone, err, old)
	}
	if got, err := reader.Open(rewrapped, []byte("key-1")); err != nil || string(got) != "seed" {
		t.Errorf("after Retire, Open of the rewrapped value = %q, %v", got, err)
	}
	later, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.Open(sealed, []byte("key-1")); !errors.Is(err, ErrNoKey) {
		t.Errorf("after Retire, Open of a value under the retired KEK: %v, want ErrNoKey", err)
	}
}

func TestKeyringFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring")

	// Processes starting together share one keyring.
	var wg sync.WaitGroup
	rings := make([]*Keyring, 8)
	for i := range rings {
		wg.Go(func() {
			var err error
			if rings[i], err = Ensure(path); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, k := range rings[1:] {
		if k != nil && rings[0] != nil && k.Primary() != rings[0].Primary() {
			t.Fatalf("concurrent Ensure made two keyrings: %s and %s", k.Primary(), rings[0].Primary())
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode: %v, %v; want 0600", fi.Mode(), err)
	}

	for _, c := range []struct{ name, text, want string }{
		{"empty", "# nothing\n", "no key"},
		{"a short key", "k1 c2hvcnQ=\n", "line 1"},
		{"no id", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n", "line 1"},
		{"a dot in the id", "k.1 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n", "line 1"},
		{"a key twice", "k1 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\nk1 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n", "twice"},
	} {
		path := filepath.Join(dir, c.name)
		os.WriteFile(path, []byte(c.text), 0o600)
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%s) = %v, want an error saying %q", c.name, err, c.want)
		}
	}
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("k1 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n"), 0o600)
	if k, err := Load(good); err != nil || k.Primary() != "k1" {
		t.Fatalf("Load of a good keyring: %v, %v", k, err)
	}

	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("k1 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n"), 0o644)
	if _, err := Load(loose); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Load of a keyring others can read = %v, want it refused", err)
	}
}
