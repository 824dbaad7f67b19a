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
	"slices"
	"strings"
	"syscall"
	"time"

	"registrar/audit"
	"registrar/sqlstore"
	"registrar/vault"
)

// backupReport is what `registrar backup --json` prints.
type backupReport struct {
	Dir           string   `json:"dir"`
	KEKFile       string   `json:"kekFile,omitempty"`
	DatabaseBytes int64    `json:"databaseBytes"`
	IndexBytes    int64    `json:"indexBytes"`
	Documents     int      `json:"documents"`
	Certificates  int      `json:"certificates"`
	Events        int64    `json:"auditEventsVerified"`
	Chains        int      `json:"auditChains"`
	People        int      `json:"people"`
	DocumentKeys  int      `json:"documentKeys"`
	KeysOpened    int      `json:"keysOpened"`
	KeysSampled   bool     `json:"keysSampled,omitempty"`
	KEKVersions   []uint32 `json:"kekVersions,omitempty"`
	Seconds       float64  `json:"seconds"`
}

// remoteKeysChecked is how many keys a backup opens when the KEK is an AWS KMS key
// (each opening is a KMS call): the first ones, people in sourcedId order, where a
// local KEK opens every key.
const remoteKeysChecked = 20

// backupPlan is what one backup copies, and where to.
type backupPlan struct {
	data, docs string // the data dir and its documents folder
	dest       string // the backup folder (new, or empty)
	kekTo      string // where the local KEK goes ("": not copied)
	remoteKEK  bool   // the KEK is an AWS KMS key
	// source opens the data dir; copy opens a copy of it with kekFile as its local
	// KEK ("" under KMS). Tests wrap them.
	source func() (*app, error)
	copy   func(dir, kekFile string) (*app, error)
}

// runBackup copies a data dir, while its server keeps serving, into a folder that is
// itself a data dir but for the local key-encryption key, and checks the copy before
// it says it is done (docs/backup.md).
func runBackup(ctx context.Context, e *env, args []string) error {
	fset, vals := newFlags(e, "backup", "--to DIR (--kek-to FILE | --without-kek) [--json]")
	to := fset.String("to", "", "the new or empty folder to write the backup into (required)")
	kekTo := fset.String("kek-to", "", "also copy the local key-encryption key to this new file, kept apart from the backup (docs/backup.md)")
	withoutKEK := fset.Bool("without-kek", false, "leave the local key-encryption key out: the backup opens only with this data dir's keys/kek.json")
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
	p := backupPlan{remoteKEK: cfg.KEKURI != ""}
	switch {
	case p.remoteKEK && (*kekTo != "" || *withoutKEK):
		return &exitError{code: 2, msg: "the key-encryption key is an AWS KMS key (--kek-uri): it never leaves KMS, so there is no --kek-to or --without-kek to choose"}
	case !p.remoteKEK && (*kekTo == "") == !*withoutKEK:
		return &exitError{code: 2, msg: "choose where the local key-encryption key goes: --kek-to FILE (a copy kept apart from the backup, needed to restore it on another machine) " +
			"or --without-kek (the backup opens only with this data dir's keys/kek.json); docs/backup.md says why it is never inside the backup"}
	}
	if p.data, err = resolve(cfg.Data); err != nil {
		return &exitError{code: 2, msg: fmt.Sprintf("--data: %v", err)}
	}
	if _, err := os.Stat(databasePath(p.data)); err != nil {
		return &exitError{code: 2, msg: fmt.Sprintf("%s holds no registrar database (--data DIR, or REGISTRAR_DATA)", cfg.Data)}
	}
	p.docs = filepath.Join(p.data, "documents")
	if cfg.DocumentsDir != "" {
		if p.docs, err = resolve(cfg.DocumentsDir); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("--documents-dir: %v", err)}
		}
	}
	if p.dest, err = resolve(*to); err != nil {
		return &exitError{code: 2, msg: fmt.Sprintf("--to: %v", err)}
	}
	for _, d := range []struct{ dir, what string }{{p.data, "the data dir"}, {p.docs, "the documents folder"}} {
		if within(p.dest, d.dir) || within(d.dir, p.dest) {
			return &exitError{code: 2, msg: fmt.Sprintf("--to %s and %s %s overlap: put the backup somewhere else", p.dest, d.what, d.dir)}
		}
	}
	if *kekTo != "" {
		if p.kekTo, err = resolve(*kekTo); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("--kek-to: %v", err)}
		}
		for _, d := range []struct{ dir, what string }{{p.dest, "--to"}, {p.data, "the data dir"}, {p.docs, "the documents folder"}} {
			if within(p.kekTo, d.dir) {
				return &exitError{code: 2, msg: fmt.Sprintf("--kek-to is inside %s: the key-encryption key is kept apart from the backup and from what the next backup copies (docs/backup.md)", d.what)}
			}
		}
		if _, err := os.Lstat(p.kekTo); err == nil {
			return &exitError{code: 2, msg: fmt.Sprintf("--kek-to %s exists: name a new file", p.kekTo)}
		}
	}
	if ents, err := os.ReadDir(p.dest); err == nil && len(ents) > 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("--to %s is not empty: a backup goes into a new or empty folder", p.dest)}
	}
	if mountPoint(p.dest) {
		return &exitError{code: 2, msg: fmt.Sprintf("--to %s is a mount point: the backup is written beside --to and renamed into place, so give a new folder inside it", p.dest)}
	}
	log := newLogger(e, cfg.LogLevel)
	p.source = func() (*app, error) { return openApp(ctx, e, cfg, log) }
	p.copy = func(dir, kekFile string) (*app, error) {
		c := *cfg
		c.Data, c.DocumentsDir, c.RedisAddr = dir, "", ""
		if p.remoteKEK {
			return openApp(ctx, e, &c, log)
		}
		v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys"), KEKFile: kekFile, ServiceKeyset: cfg.Keyset})
		if err != nil {
			return nil, err
		}
		return openAppWith(ctx, &c, log, v)
	}
	rep, err := p.run(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(rep)
	}
	fmt.Fprintf(e.stdout, "backup of %s written to %s in %.1fs\n", cfg.Data, rep.Dir, rep.Seconds)
	fmt.Fprintf(e.stdout, "  database %d bytes, index %d bytes, %d documents, %d deletion certificates\n", rep.DatabaseBytes, rep.IndexBytes, rep.Documents, rep.Certificates)
	fmt.Fprintf(e.stdout, "  checked: audit trail intact (%d events in %d chain(s))\n", rep.Events, rep.Chains)
	if rep.KeysSampled {
		fmt.Fprintf(e.stdout, "  checked: the first %d keys of %d people open with the AWS KMS key (a sample: each opening is a KMS call)\n", rep.KeysOpened, rep.People)
		return nil
	}
	fmt.Fprintf(e.stdout, "  checked: every key of %d people (%d keys) opens with key-encryption key version(s) %v\n", rep.People, rep.KeysOpened, rep.KEKVersions)
	if rep.KEKFile != "" {
		fmt.Fprintf(e.stdout, "The key-encryption key is in %s: keep it apart from the backup, for no longer than you promise deletion (docs/backup.md).\n", rep.KEKFile)
	} else {
		fmt.Fprintf(e.stdout, "The backup holds no key-encryption key: it opens with %s/keys/kek.json until `keys rotate` retires version(s) %v.\n", cfg.Data, rep.KEKVersions)
	}
	return nil
}

// run writes the backup into a sibling folder of dest and renames it into place once
// it checks, so a folder at dest is always a whole, checked backup: a run that fails
// or is killed leaves only its "DEST.partial-*" folder (removed when it fails). The
// KEK copy goes the same way.
func (p *backupPlan) run(ctx context.Context) (backupReport, error) {
	start := time.Now()
	parent := filepath.Dir(p.dest)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return backupReport{}, fmt.Errorf("--to: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(p.dest)+".partial-*")
	if err != nil {
		return backupReport{}, fmt.Errorf("--to: %w", err)
	}
	kekTmp := ""
	if p.kekTo != "" {
		kekTmp = p.kekTo + filepath.Base(tmp)[len(filepath.Base(p.dest)):]
	}
	a, err := p.source()
	if err != nil {
		os.Remove(tmp)
		return backupReport{}, err
	}
	defer a.close()
	// A copy of every record: audited, durably, before it is taken (so the copy holds
	// its own event); a failure is recorded too.
	ev := operatorEvent("backup")
	ev.ResourceType, ev.Detail = "dataDir", "backup of the data dir to "+p.dest
	err = a.store.Audit(ctx, ev)
	var rep backupReport
	if err == nil {
		rep, err = p.write(ctx, a, tmp, kekTmp)
	}
	published := false
	if err == nil {
		published, err = p.publish(tmp, kekTmp)
	}
	switch {
	case err != nil && published:
		// In place and checked; what failed came after (a folder's sync, removing the
		// KEK's temporary name): say so, remove nothing.
		err = fmt.Errorf("the backup is in %s, checked, but: %w", p.dest, err)
	case err != nil:
		if cleanup := errors.Join(os.RemoveAll(tmp), removeIfExists(kekTmp)); cleanup != nil {
			err = fmt.Errorf("backup failed: %w (and its partial copy %s could not be removed: %v)", err, tmp, cleanup)
		} else {
			err = fmt.Errorf("backup failed, and its partial copy was removed: %w", err)
		}
	}
	if err != nil {
		ev.Time, ev.Outcome, ev.Detail = time.Now(), audit.Failed, err.Error()
		if aerr := a.store.Audit(context.WithoutCancel(ctx), ev); aerr != nil {
			a.log.Error("backup: the failure's audit event was not written", "err", aerr)
		}
		return rep, err
	}
	rep.Dir, rep.KEKFile, rep.Seconds = p.dest, p.kekTo, time.Since(start).Seconds()
	return rep, nil
}

// publish puts the checked copy (and the KEK copy) in place and syncs the folders
// that name them; published says whether the backup is in place. The KEK is copied
// to a file created for it (never replacing one that appeared since, on any file
// system); rename(2) replaces an empty folder and refuses one that is not, so two
// runs racing for one --to cannot both succeed.
func (p *backupPlan) publish(tmp, kekTmp string) (published bool, err error) {
	if kekTmp != "" {
		if err := copyFile(kekTmp, p.kekTo); err != nil {
			return false, fmt.Errorf("--kek-to: %w", err)
		}
	}
	if err := os.Rename(tmp, p.dest); err != nil {
		if kekTmp != "" {
			os.Remove(p.kekTo) // ours: created just above
		}
		return false, fmt.Errorf("--to: %w", err)
	}
	err = errors.Join(removeIfExists(kekTmp), sqlstore.SyncPath(filepath.Dir(p.dest)))
	if kekTmp != "" {
		err = errors.Join(err, sqlstore.SyncPath(filepath.Dir(p.kekTo)))
	}
	return true, err
}

// write copies the data dir that a has open into dir (the KEK into kekFile, if
// asked) and checks the copy.
func (p *backupPlan) write(ctx context.Context, a *app, dir, kekFile string) (rep backupReport, err error) {
	// Documents before the database: a document's key is committed before its file
	// is written, so every copied document opens with a key the snapshot holds.
	if rep.Documents, err = copyTree(p.docs, filepath.Join(dir, "documents")); err != nil {
		return rep, err
	}
	if rep.Certificates, err = copyTree(filepath.Join(p.data, "certificates"), filepath.Join(dir, "certificates")); err != nil {
		return rep, err
	}
	var files sqlstore.BackupReport
	if files, err = a.store.Backup(ctx, dir); err != nil {
		return rep, err
	}
	rep.DatabaseBytes, rep.IndexBytes = files.DatabaseSize, files.IndexSize
	// The keys after the database: a key rotation finishing in between would have
	// retired a KEK version the snapshot needs, which the check finds. The local KEK
	// never goes into the backup.
	keys := filepath.Join(p.data, "keys")
	kek, svc := vault.LocalKEKFile(keys), vault.ServiceKeysetFile(keys)
	if err = os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		return rep, err
	}
	// The service keyset only (wrapped by the KEK; absent when it is injected): never
	// whatever else an operator put in keys/.
	if err = copyFile(svc, vault.ServiceKeysetFile(filepath.Join(dir, "keys"))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, err
	}
	if err = copyFile(filepath.Join(p.data, "instance-id"), filepath.Join(dir, "instance-id")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, err
	}
	check := ""
	if !p.remoteKEK {
		check = kek // the live KEK
		if kekFile != "" {
			if err = copyFile(kek, kekFile); err != nil {
				return rep, fmt.Errorf("--kek-to: %w", err)
			}
			check = kekFile
		}
	}
	if err = sqlstore.SyncPath(dir); err != nil {
		return rep, err
	}
	err = p.check(ctx, &rep, dir, check)
	return rep, err
}

// check opens the copy as a restore would (with the KEK in kekFile) and checks its
// keys and its trail.
func (p *backupPlan) check(ctx context.Context, rep *backupReport, dir, kekFile string) (err error) {
	b, err := p.copy(dir, kekFile)
	if err != nil {
		return fmt.Errorf("the copy does not open with its keys: %w", err)
	}
	// Closing the copy writes what its first start would (the index's tail, a
	// checkpoint over its last events); a close that fails fails the backup.
	defer func() {
		if cerr := b.closeErr(); cerr != nil && err == nil {
			err = fmt.Errorf("the copy does not close cleanly: %w", cerr)
		}
	}()
	limit := 0
	if p.remoteKEK {
		limit, rep.KeysSampled = remoteKeysChecked, true
	}
	if rep.KeysOpened, err = b.store.CheckKeys(ctx, func(subject string, wrapped []byte, document bool) error {
		if document {
			_, err := b.vault.DocumentKey(subject, wrapped)
			return err
		}
		_, err := b.vault.DataKey(subject, wrapped)
		return err
	}, limit); err != nil {
		return fmt.Errorf("the copy's keys do not open its data (was a key rotation finishing? run the backup again): %w", err)
	}
	st, err := b.store.KeyStatus(ctx)
	if err != nil {
		return err
	}
	rep.People, rep.DocumentKeys = st.Keys, st.Documents
	if !p.remoteKEK {
		for v := range st.ByVersion {
			rep.KEKVersions = append(rep.KEKVersions, v)
		}
		slices.Sort(rep.KEKVersions)
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

// resolve makes path absolute with its symbolic links resolved, as far as it exists.
func resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest), nil
		}
		if dir == filepath.Dir(dir) {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// within reports whether path is dir or below it (both resolved).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// mountPoint reports whether dir exists and is on another file system than its parent.
func mountPoint(dir string) bool {
	a, errA := os.Stat(dir)
	b, errB := os.Stat(filepath.Dir(dir))
	if errA != nil || errB != nil {
		return false
	}
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return okA && okB && sa.Dev != sb.Dev
}

func removeIfExists(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// copyTree copies the regular files under src (through a symbolic link to it) into
// dst, folders 0700 and files 0600, each synced, leaving out documents still being
// written (".tmp-*"), and returns how many it copied; a missing src copies nothing.
func copyTree(src, dst string) (int, error) {
	root, err := filepath.EvalSymlinks(src)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", src, err)
	}
	n := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (a document deleted)
			}
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".tmp-"):
			return nil
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
	return n, filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return sqlstore.SyncPath(path) // the copied files' names are durable too
	})
}

// copyFile copies one file into a new file (0600) and syncs it.
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
