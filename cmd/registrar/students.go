package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"registrar/config"
	"registrar/documents"
	"registrar/sqlstore"
	"registrar/vault"
)

// openDocuments opens the document folder: --documents-dir, or DATA/documents.
func openDocuments(a *app) (*documents.Store, error) {
	dir := a.cfg.DocumentsDir
	if dir == "" {
		dir = filepath.Join(a.cfg.Data, "documents")
	}
	return documents.Open(dir, a.vault, documents.Options{})
}

// positional parses flags that may come before or after one positional argument
// ("purge ID --yes" as well as "purge --yes ID").
func positional(e *env, fs *flag.FlagSet, vals map[string]*string, args []string, what string) (string, *config.Config, error) {
	var arg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return "", nil, err
	}
	rest := fs.Args()
	if arg == "" && len(rest) > 0 {
		arg, rest = rest[0], rest[1:]
	}
	if arg == "" || len(rest) > 0 {
		fs.Usage()
		return "", nil, &exitError{code: 2, msg: "want exactly one " + what}
	}
	return arg, cfg, nil
}

func runStudents(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "purge" {
		return &exitError{code: 2, msg: "want a subcommand: purge SOURCEDID"}
	}
	return studentsPurge(ctx, e, args[1:])
}

// studentsPurge destroys one student's records and keys and writes the signed
// deletion certificate.
func studentsPurge(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "students purge", "SOURCEDID --yes [--reason REF] [--out FILE]")
	yes := fs.Bool("yes", false, "really destroy the student's records and keys: this cannot be undone")
	reason := fs.String("reason", "", "the request this fulfils (a reference such as a ticket number; no personal data): written into the certificate")
	out := fs.String("out", "", "where to write the deletion certificate (default DATA/certificates/ID.json)")
	id, cfg, err := positional(e, fs, vals, args, "student sourcedId")
	if err != nil {
		return err
	}
	if !*yes {
		return &exitError{code: 2, msg: fmt.Sprintf("this destroys every record of student %q and their keys, for good; run again with --yes", id)}
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	docs, err := openDocuments(a)
	if err != nil {
		return err
	}
	res, err := a.store.Purge(ctx, sqlstore.PurgeRequest{Student: id, Reason: *reason, Event: operatorEvent("students.purge"), Signer: a.vault, Documents: docs})
	if res.Certificate == nil && err != nil {
		return err
	}
	path := *out
	if path == "" {
		path = filepath.Join(cfg.Data, "certificates", res.Body.ID+".json")
	}
	if werr := writeCertificate(path, res.Certificate); werr != nil {
		return fmt.Errorf("the student was deleted, but the certificate could not be written (it is kept in the database, id %s): %w", res.Body.ID, werr)
	}
	var parts []string
	for k, n := range res.Body.Deleted {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	fmt.Fprintf(e.stdout, "student %s deleted: %s; keys destroyed: %s\n", id, strings.Join(parts, ", "), strings.Join(res.Body.KeysDestroyed, ", "))
	fmt.Fprintf(e.stdout, "deletion certificate %s written to %s\n", res.Body.ID, path)
	fmt.Fprintf(e.stdout, "copies of the student's keys in backups taken before now are wrapped under KEK version(s) %s: run `registrar keys rotate` to retire them\n", ids(res.Body.WrappedUnder))
	return err
}

func writeCertificate(path string, doc []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, doc, 0o600)
}

func runCertificates(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return &exitError{code: 2, msg: "want a subcommand: verify FILE"}
	}
	fs, vals := newFlags(e, "certificates verify", "FILE")
	file, cfg, err := positional(e, fs, vals, args[1:], "certificate file")
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	keys := filepath.Join(cfg.Data, "keys")
	if cfg.KEKURI == "" {
		// Verifying must not create keys: a new key would verify nothing. (With
		// --kek-uri, openVault refuses a missing service keyset itself.)
		if _, err := os.Stat(vault.LocalKEKFile(keys)); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("no keys in %s: give the --data of the registrar that issued the certificate", keys)}
		}
	}
	v, err := openVault(ctx, e, cfg)
	if err != nil {
		return err
	}
	typ, body, err := v.VerifyJSON(b)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("%s does NOT verify: %v", file, err)}
	}
	if typ != sqlstore.CertificateType {
		return &exitError{code: 1, msg: fmt.Sprintf("%s is signed, but it is a %q, not a deletion certificate", file, typ)}
	}
	var c sqlstore.DeletionCertificate
	if err := json.Unmarshal(body, &c); err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: the signed body is not a deletion certificate: %v", file, err)}
	}
	fmt.Fprintf(e.stdout, "certificate %s verifies: student %s deleted at %s by %s %s\n", c.ID, c.Student, c.IssuedAt, c.DeletedBy.Kind, c.DeletedBy.ID)
	return nil
}
