package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/store"
)

type secretsCmd struct {
	Init   secretsInitCmd   `cmd:"" help:"Make a keyring (a file of key-encryption keys, mode 0600) if there is none, for souk serve --keyring."`
	Rotate secretsRotateCmd `cmd:"" help:"Put a new primary key in the keyring and re-wrap every sealed value's data key with it, in every database that holds some; --retire then drops the old keys."`
}

type secretsInitCmd struct {
	Keyring string `required:"" type:"path" placeholder:"FILE" help:"Where to make the keyring."`
}

func (c *secretsInitCmd) run(stdout io.Writer) error {
	if err := os.MkdirAll(filepath.Dir(c.Keyring), 0o700); err != nil {
		return err
	}
	k, err := secrets.Ensure(c.Keyring)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keyring %s: primary key %s\nGive every instance of %s the same file (--keyring); keep it secret and backed up.\n",
		k.Path(), k.Primary(), strings.Join(system.SealerNames(), " and "))
	return nil
}

type secretsRotateCmd struct {
	Data    string            `default:".souk" help:"souk up's data directory: its keyring and SQLite files, for what is not given below."`
	Keyring string            `type:"path" placeholder:"FILE" help:"The keyring (default: <data>/keyring)."`
	DB      map[string]string `name:"db" placeholder:"SERVICE=URL" help:"A service's database, e.g. --db payments=postgres://… (repeat for each; default: <data>/<service>.db)."`
	Retire  bool              `help:"After re-wrapping, drop every key but the new primary from the keyring, if no sealed value needs it any more."`
}

func (c *secretsRotateCmd) run(ctx context.Context, stdout io.Writer) error {
	sealers := system.SealerNames()
	for name := range c.DB {
		if !slices.Contains(sealers, name) {
			return fmt.Errorf("--db %s=…: %s seals nothing; these do: %s", name, name, strings.Join(sealers, ", "))
		}
	}
	path := c.Keyring
	if path == "" {
		path = filepath.Join(c.Data, "keyring")
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no keyring at %s (souk secrets init makes one)", path)
	}
	// Every database must open before the keyring changes.
	dbs := map[string]*store.DB{}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	for _, name := range sealers {
		url := c.DB[name]
		if url == "" {
			url = filepath.Join(c.Data, name+".db")
			if _, err := os.Stat(url); err != nil {
				return fmt.Errorf("%s's database: no %s; give --db %s=URL", name, url, name)
			}
		}
		db, err := store.Open(ctx, url)
		if err != nil {
			return fmt.Errorf("%s's database: %w", name, err)
		}
		dbs[name] = db
	}

	id, err := secrets.Rotate(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new primary key %s in %s\n", id, path)
	k, err := secrets.Load(path)
	if err != nil {
		return err
	}
	rewrap := func() (map[string]bool, error) {
		inUse := map[string]bool{}
		for _, name := range sealers {
			for _, col := range system.SealedColumns(name) {
				n, byKey, err := k.RewrapColumn(ctx, dbs[name], col)
				if err != nil {
					return nil, fmt.Errorf("%s: %w (the new key stays primary: run rotate again once it is fixed)", name, err)
				}
				fmt.Fprintf(stdout, "%s: %s: %d re-wrapped\n", name, col, n)
				for kid := range byKey {
					inUse[kid] = true
				}
			}
		}
		return inUse, nil
	}
	if _, err := rewrap(); err != nil {
		return err
	}
	if !c.Retire {
		fmt.Fprintf(stdout, "older keys kept: %s (--retire drops those no value needs)\n", strings.Join(k.IDs()[1:], ", "))
		return nil
	}
	// A process that read the keyring just before it changed may have
	// sealed a value with the old primary since: look again, a moment
	// later, and keep every key still in use.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	inUse, err := rewrap()
	if err != nil {
		return err
	}
	gone, err := secrets.Retire(path, inUse)
	if err != nil {
		return err
	}
	if len(gone) == 0 {
		fmt.Fprintln(stdout, "retired: none (every older key still seals something)")
		return nil
	}
	fmt.Fprintf(stdout, "retired: %s\n", strings.Join(gone, ", "))
	return nil
}

// keyring opens the keyring of a service that seals secrets: --keyring's
// file, which must exist, or <data>/keyring, made at first start for a
// service on a SQLite file. A service on a shared database never makes its
// own: its instances would seal with keys the others do not have.
func (s *serveCmd) keyring(db string) (*secrets.Keyring, error) {
	path := s.Keyring
	if path == "" {
		path = filepath.Join(s.Data, "keyring")
		if _, sqlite := store.SQLitePath(db); sqlite {
			if err := os.MkdirAll(s.Data, 0o700); err != nil {
				return nil, err
			}
			return secrets.Ensure(path)
		}
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s seals secrets at rest and needs a keyring, the same for every instance: none at %s (souk secrets init --keyring %s makes one; --keyring FILE says where it is)", s.Service, path, path)
	}
	return secrets.Load(path)
}
