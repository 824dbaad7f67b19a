package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"registrar/audit"
	"registrar/authn"
	"registrar/cache"
	"registrar/config"
	"registrar/sqlstore"
	"registrar/vault"
)

// app is the opened data dir: configuration, keys, store and authenticator.
type app struct {
	cfg   *config.Config
	log   *slog.Logger
	vault *vault.Vault
	store *sqlstore.Store
	auth  *authn.Authenticator
	cache cache.Cache
	chain string
}

// flags builds a subcommand's flag set with every configuration setting on it.
func newFlags(e *env, name, usage string) (*flag.FlagSet, map[string]*string) {
	fs := flag.NewFlagSet("registrar "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	vals := config.Register(fs)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: registrar %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs, vals
}

// parse parses args and loads the configuration.
func parse(e *env, fs *flag.FlagSet, vals map[string]*string, args []string) (*config.Config, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &exitError{code: 0}
		}
		return nil, &exitError{code: 2}
	}
	cfg, err := config.Load(fs, vals, e.getenv)
	if err != nil {
		return nil, &exitError{code: 2, msg: err.Error()}
	}
	return cfg, nil
}

func newLogger(e *env, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: l}))
}

// openApp opens (creating on first use) the data dir: keys, database, migrations.
func openApp(ctx context.Context, e *env, cfg *config.Config, log *slog.Logger) (*app, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", cfg.Data, err)
	}
	v, err := openVault(ctx, e, cfg) // the local keyset, or the AWS KMS key of --kek-uri (kms.go)
	if err != nil {
		return nil, err
	}
	return openAppWith(ctx, cfg, log, v)
}

// openAppWith opens the data dir with the keys of v (a backup's check opens the copy
// with a key-encryption key kept outside it).
func openAppWith(ctx context.Context, cfg *config.Config, log *slog.Logger, v *vault.Vault) (*app, error) {
	a := &app{cfg: cfg, log: log, vault: v}
	var err error
	a.chain = cfg.InstanceID
	if a.chain == "" {
		if a.chain, err = instanceID(cfg.Data); err != nil {
			return nil, err
		}
	}
	a.store, err = sqlstore.Open(ctx, sqlstore.Options{
		Path: databasePath(cfg.Data),
		// PostgreSQL when a URL is set; the password and CA travel beside it, never in it.
		URL: cfg.DatabaseURL, ReaderURL: cfg.DatabaseReaderURL, Password: cfg.DatabasePassword, CAFile: cfg.DatabaseCAFile,
		Chain: a.chain, Vault: a.vault, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	var oidc *authn.OIDC
	if cfg.OIDCIssuer != "" {
		oidc = authn.NewOIDC(cfg.OIDCIssuer, cfg.OIDCAudience, cfg.OIDCClaim)
	}
	a.auth, err = authn.New(a.store, a.vault, cfg.TokenTTL, oidc)
	if err != nil {
		a.store.Close()
		return nil, err
	}
	if a.cache, err = openCache(cfg, a.vault, log); err != nil {
		a.store.Close()
		return nil, err
	}
	a.auth.SetVerifiedCache(a.cache, verifiedTokenTTL)
	return a, nil
}

// verifiedTokenTTL bounds how long a verified token's claims are reused (never past
// the token's expiry); a client's revocation is checked on every request regardless.
const verifiedTokenTTL = 5 * time.Minute

// openCache opens the cache (docs/cache.md): the in-process one, or, with
// --redis-addr, the in-process one in front of Redis, where keys and values are
// sealed under keys derived from the service keyset. Redis is not contacted here:
// a server starts, degraded, while Redis is away.
func openCache(cfg *config.Config, v *vault.Vault, log *slog.Logger) (cache.Cache, error) {
	if cfg.RedisAddr == "" {
		return cache.NewMemory(cache.MemoryOptions{}), nil
	}
	keys, err := cache.KeysFromPRF(v.BlindIndex)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if cfg.RedisTLS {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	r, err := cache.NewRedis(cache.RedisOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, TLS: tlsConf, Logger: log})
	if err != nil {
		return nil, err
	}
	return cache.NewTiered(cache.NewMemory(cache.MemoryOptions{}), cache.NewSealed(r, keys), 0), nil
}

func (a *app) close() {
	if err := a.closeErr(); err != nil {
		a.log.Error("close", "err", err)
	}
}

// closeErr closes the cache and the store and returns what went wrong.
func (a *app) closeErr() error {
	var err error
	if a.cache != nil {
		if cerr := a.cache.Close(); cerr != nil {
			err = fmt.Errorf("close cache: %w", cerr)
		}
	}
	if serr := a.store.Close(); serr != nil {
		err = errors.Join(err, fmt.Errorf("close store: %w", serr))
	}
	return err
}

// databasePath is the SQLite database of the data dir data.
func databasePath(data string) string { return filepath.Join(data, "registrar.db") }

// instanceID returns this data dir's audit chain id, creating it on first use.
func instanceID(dir string) (string, error) {
	path := filepath.Join(dir, "instance-id")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	id := vault.RandomID()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return id, nil
}

// operatorEvent is an audit event for something done at the command line.
func operatorEvent(action string) audit.Event {
	who := os.Getenv("USER")
	if who == "" {
		who = "unknown"
	}
	return audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: who, Action: action, Outcome: audit.OK, Time: time.Now()}
}
