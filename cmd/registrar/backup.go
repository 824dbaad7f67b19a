package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"registrar/config"
	"registrar/sqlstore"
	"registrar/vault"
)

// backupReport is what `registrar backup --json` prints.
type backupReport struct {
	Dir           string  `json:"dir"`
	DatabaseBytes int64   `json:"databaseBytes"`
	IndexBytes    int64   `json:"indexBytes"`
	Documents     int     `json:"documents"`
	Certificates  int     `json:"certificates"`
	Events        int64   `json:"auditEventsVerified"`
	Chains        int     `json:"auditChains"`
	Keys          int     `json:"keys"`
	KeysOpened    int     `json:"keysOpened"`
	KeysSampled   bool    `json:"keysSampled,omitempty"`
	Seconds       float64 `json:"seconds"`
}

// remoteKeysChecked is how many keys a backup opens when the KEK is an AWS KMS key
// (each opening is a KMS call): a sample, where a local KEK opens every key.
const remoteKeysChecked = 20

// runBackup copies a data dir, while its server keeps serving, into a new folder
// that is itself a data dir, and checks the copy before it says it is done
// (docs/backup.md): documents and deletion certificates first, then one snapshot of
// the index file and one of the database, then the keys. The copy is checked as a
// restore would use it: opened with its own keys, its audit trail verified, and
// every person's keys opened (a sample of them with an AWS KMS key). A backup that
// fails any step is removed.
func runBackup(ctx context.Context, e *env, args []string) error {
	fset, vals := newFlags(e, "backup", "--to DIR [--json]")
	to := fset.String("to", "", "the new or empty folder to write the backup into (required)")
	asJSON := fset.Bool("json", false, "print the report as JSON")
	cfg, err := parse(e, fset, vals, args)
	if err != nil {
		return err
	}
	if *to == "" || fset.NArg() > 0 {
		fset.Usage()
		return &exitError{code: 2, msg: "want --to DIR and nothing else"}
	}
	if cfg.DatabaseURL != "" {
		return &exitError{code: 2, msg: "the database is PostgreSQL (--database-url): back it up with its own tools (Aurora's automated backups and snapshots, docs/deploy-aws.md); this command copies an embedded data dir"}
	}
	dest, err := filepath.Abs(*to)
	if err != nil {
		return &exitError{code: 2, msg: fmt.Sprintf("--to: %v", err)}
	}
	if src, err := filepath.Abs(cfg.Data); err == nil && (dest == src || isWithin(dest, src)) {
		return &exitError{code: 2, msg: fmt.Sprintf("--to %s is inside the data dir %s: put the backup somewhere else", dest, src)}
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, "registrar.db")); err != nil {
		return &exitError{code: 2, msg: fmt.Sprintf("%s holds no registrar database (--data DIR, or REGISTRAR_DATA)", cfg.Data)}
	}
	rep, err := backupInto(ctx, cfg, dest, func(data string) (*app, error) {
		c := *cfg
		c.Data = data
		return openApp(ctx, e, &c, newLogger(e, cfg.LogLevel))
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		return enc.Encode(rep)
	}
	fmt.Fprintf(e.stdout, "backup of %s written to %s in %.1fs\n", cfg.Data, dest, rep.Seconds)
	fmt.Fprintf(e.stdout, "  database %d bytes, index %d bytes, %d documents, %d deletion certificates\n", rep.DatabaseBytes, rep.IndexBytes, rep.Documents, rep.Certificates)
	fmt.Fprintf(e.stdout, "  checked: audit trail intact (%d events in %d chain(s))\n", rep.Events, rep.Chains)
	if rep.KeysSampled {
		fmt.Fprintf(e.stdout, "  checked: %d of %d people's keys open with the AWS KMS key (a sample: each opening is a KMS call)\n", rep.KeysOpened, rep.Keys)
	} else {
		fmt.Fprintf(e.stdout, "  checked: every key of %d people opens with the copied keys (%d keys)\n", rep.Keys, rep.KeysOpened)
	}
	fmt.Fprintf(e.stdout, "It holds the keys that open it: keep it as safe as the data dir. To restore, stop the server and start it with --data %s (or copy that folder to the data dir's place).\n", dest)
	return nil
}

// backupInto writes the backup of cfg's data dir into dest (new, or empty) and
// removes what it wrote if any step fails; open opens a data dir as the CLI does.
func backupInto(ctx context.Context, cfg *config.Config, dest string, open func(string) (*app, error)) (backupReport, error) {
	made, err := emptyDir(dest)
	if err != nil {
		return backupReport{}, &exitError{code: 2, msg: err.Error()}
	}
	start := time.Now()
	rep, err := backup(ctx, cfg.Data, dest, cfg.DocumentsDir, open)
	if err != nil {
		removeBackup(dest, made)
		return rep, fmt.Errorf("backup failed and what it wrote in %s was removed: %w", dest, err)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// backup copies data into dest and checks the copy.
func backup(ctx context.Context, data, dest, docsDir string, open func(string) (*app, error)) (backupReport, error) {
	rep := backupReport{Dir: dest}
	if docsDir == "" {
		docsDir = filepath.Join(data, "documents")
	}
	a, err := open(data)
	if err != nil {
		return rep, err
	}
	closeSource := sync.OnceFunc(a.close)
	defer closeSource()
	// A copy of every record: audited, durably, before it is taken (so the copy holds
	// its own event).
	ev := operatorEvent("backup")
	ev.ResourceType, ev.Detail = "dataDir", "backup of the data dir to "+dest
	if err := a.store.Audit(ctx, ev); err != nil {
		return rep, err
	}
	// Documents before the database: a document's key is in the database before its
	// file is written, so every copied document opens with a key the snapshot holds.
	if rep.Documents, err = copyTree(docsDir, filepath.Join(dest, "documents")); err != nil {
		return rep, err
	}
	if rep.Certificates, err = copyTree(filepath.Join(data, "certificates"), filepath.Join(dest, "certificates")); err != nil {
		return rep, err
	}
	files, err := a.store.Backup(ctx, dest)
	if err != nil {
		return rep, err
	}
	rep.DatabaseBytes, rep.IndexBytes = files.DatabaseSize, files.IndexSize
	// The keys after the database: a key rotation finishing in between would have
	// retired a KEK version the snapshot needs, which the check below finds.
	if _, err := copyTree(filepath.Join(data, "keys"), filepath.Join(dest, "keys")); err != nil {
		return rep, err
	}
	if err := copyFile(filepath.Join(data, "instance-id"), filepath.Join(dest, "instance-id")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, err
	}
	closeSource()
	return rep, checkBackup(ctx, &rep, dest, open)
}

// checkBackup opens the copy as a restore would and checks its trail and its keys.
func checkBackup(ctx context.Context, rep *backupReport, dest string, open func(string) (*app, error)) error {
	b, err := open(dest)
	if err != nil {
		return fmt.Errorf("the copy does not open: %w", err)
	}
	defer b.close()
	limit := 0
	if _, _, err := b.vault.KEKVersions(); errors.Is(err, vault.ErrRemoteKEK) {
		limit, rep.KeysSampled = remoteKeysChecked, true
	}
	kc, err := b.store.CheckKeys(ctx, func(subject string, wrapped []byte, document bool) error {
		if document {
			_, err := b.vault.DocumentKey(subject, wrapped)
			return err
		}
		_, err := b.vault.DataKey(subject, wrapped)
		return err
	}, limit)
	rep.Keys, rep.KeysOpened = kc.Keys, kc.Opened
	if err != nil {
		return fmt.Errorf("the copy's keys do not open its data (was a key rotation finishing? run the backup again): %w", err)
	}
	v, err := b.store.Verify(ctx, sqlstore.VerifyOptions{})
	if err != nil {
		return fmt.Errorf("the copy's audit trail does not verify: %w", err)
	}
	for _, c := range v.Chains {
		rep.Events += c.Events
	}
	rep.Chains = len(v.Chains)
	return nil
}

// emptyDir makes dir, or accepts it when it exists and is empty; made says which.
func emptyDir(dir string) (made bool, err error) {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("--to: %v", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("--to: %v", err)
	case len(ents) > 0:
		return false, fmt.Errorf("--to %s is not empty: a backup goes into a new or empty folder", dir)
	}
	return false, os.Chmod(dir, 0o700)
}

// removeBackup removes a failed backup: the folder if this run made it, else what
// it wrote into it.
func removeBackup(dir string, made bool) {
	if made {
		os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		os.RemoveAll(filepath.Join(dir, en.Name()))
	}
}

// isWithin reports whether path is below dir (both absolute and clean).
func isWithin(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// copyTree copies the regular files under src into dst (folders 0700, files 0600,
// each synced) and returns how many it copied; a missing src copies nothing.
func copyTree(src, dst string) (int, error) {
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	n := 0
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != src && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (a document deleted, a temporary file renamed)
			}
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".tmp-"):
			return nil // a document being written: not yet in place, so not in the backup
		}
		err = copyFile(path, target)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			n++
		}
		return err
	})
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", src, err)
	}
	return n, syncDirs(dst)
}

// copyFile copies one file (0600) and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// syncDirs fsyncs dir and every folder under it, so the copied files' names are
// durable too.
func syncDirs(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
