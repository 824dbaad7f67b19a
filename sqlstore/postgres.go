package sqlstore

// PostgreSQL (Aurora PostgreSQL at scale) through pgx's database/sql driver, so every
// query, the committer and the migrations are the same code as on SQLite; only the
// dialect below and the way connections are opened differ.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"
)

type postgresDialect struct{}

var _ dialect = postgresDialect{}

var (
	pgTypes = strings.NewReplacer("{{blob}}", "BYTEA", "{{real}}", "DOUBLE PRECISION", "{{serial}}", "BIGSERIAL PRIMARY KEY", "{{bigint}}", "BIGINT")
	pgText  = regexp.MustCompile(`\bTEXT\b`)
)

func (postgresDialect) name() string           { return "postgres" }
func (postgresDialect) rebind(q string) string { return RebindDollar(q) }

// ddl also gives every text column the "C" collation: identifiers and names then sort
// and compare byte-wise, as on SQLite (BINARY), whatever locale the database was
// created with, so pages, sort orders and ranges are the same on both engines.
func (postgresDialect) ddl(q string) string {
	return pgText.ReplaceAllString(pgTypes.Replace(q), `TEXT COLLATE "C"`)
}

// jsonAgg returns JSON text, '[]' for no rows (json_agg alone gives NULL), as SQLite's
// json_group_array does.
func (postgresDialect) jsonAgg(expr string) string {
	return "COALESCE(json_agg(" + expr + " ORDER BY " + expr + ")::text, '[]')"
}

// jsonContains uses containment (@>) rather than the ? operator, which rebind would
// take for a placeholder. A NULL list contains nothing (false, not NULL), so that
// NOT jsonContains matches rows without the list, as on SQLite.
func (postgresDialect) jsonContains(col string) string {
	return "COALESCE((" + col + ")::jsonb @> jsonb_build_array(?::text), false)"
}

func (postgresDialect) like(col string) string { return col + " ILIKE ? ESCAPE '\\'" }

// nullsLow: PostgreSQL sorts NULL above every value by default; SQLite below.
func (postgresDialect) nullsLow(desc bool) string {
	if desc {
		return " NULLS LAST"
	}
	return " NULLS FIRST"
}

// Pool settings. Each instance holds one writer connection (the committer's) and a
// small read pool: an Aurora writer serves many instances, and its max_connections
// (about 1,000 on a db.r6g.large) is shared by all of them and by the tools.
const (
	pgDefaultReaders  = 10
	pgConnMaxLifetime = 30 * time.Minute // so connections move to a new writer or reader after failover and rebalance
	pgConnMaxIdleTime = 5 * time.Minute
	pgConnectTimeout  = 10 * time.Second
	// pgCancelGrace is how long a cancelled statement may take to stop, after the
	// cancel request, before the connection itself is abandoned.
	pgCancelGrace = 5 * time.Second
)

// migrationLockKey is the pg_advisory_lock key that serializes migrations between
// instances starting at once ("registra" in ASCII; fixed forever).
const migrationLockKey int64 = 0x7265676973747261

// openPostgres connects the writer and reader pools and migrates under an advisory
// lock. The password never appears in a URL, a log line or an error.
func (s *Store) openPostgres(ctx context.Context, o Options) error {
	s.d = postgresDialect{}
	wcfg, err := pgConfig(o.URL, o.Password, o.CAFile)
	if err != nil {
		return err
	}
	rurl := o.ReaderURL
	if rurl == "" {
		rurl = o.URL
	}
	rcfg, err := pgConfig(rurl, o.Password, o.CAFile)
	if err != nil {
		return err
	}
	for _, c := range []*pgx.ConnConfig{wcfg, rcfg} {
		if weakTLS(c) {
			s.log.Warn("the database connection is encrypted but the server is not verified: use sslmode=verify-full with a CA file", "host", c.Host)
		}
	}
	// A caller giving up (its context ends) while its statement runs in the committer's
	// shared transaction must not break the connection under its neighbours: cancel the
	// statement on the server instead (pgx's default closes the connection), and let
	// the committer roll back to the request's savepoint.
	wcfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: pgCancelGrace}
	}
	// A list and its count read one snapshot.
	rcfg.RuntimeParams["default_transaction_isolation"] = "repeatable read"

	readers := o.Readers
	if readers <= 0 {
		readers = pgDefaultReaders
	}
	s.w = stdlib.OpenDB(*wcfg)
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(pgConnMaxLifetime)
	s.w.SetConnMaxIdleTime(pgConnMaxIdleTime)
	// The audit index's writer (auditindex.go): its own connection, so that its runs
	// never wait for the committer's, nor the committer for them.
	s.ix = stdlib.OpenDB(*wcfg)
	s.ix.SetMaxOpenConns(1)
	s.ix.SetMaxIdleConns(1)
	s.ix.SetConnMaxLifetime(pgConnMaxLifetime)
	s.ix.SetConnMaxIdleTime(pgConnMaxIdleTime)
	s.r = stdlib.OpenDB(*rcfg)
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	s.r.SetConnMaxLifetime(pgConnMaxLifetime)
	s.r.SetConnMaxIdleTime(pgConnMaxIdleTime)
	fail := func(err error) error {
		s.w.Close()
		s.r.Close()
		s.ix.Close()
		return err
	}
	if err := s.w.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("sqlstore: connect to the database: %w", err))
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("sqlstore: connect to the reader database: %w", err))
	}
	if err := s.migrateLocked(ctx, wcfg); err != nil {
		return fail(err)
	}
	return nil
}

// migrateLocked runs migrate while holding a session advisory lock on a connection of
// its own, so instances starting together migrate one after the other (the later
// ones find nothing left to do). The lock goes with the connection if it dies.
func (s *Store) migrateLocked(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return fmt.Errorf("sqlstore: connect for migrations: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("sqlstore: wait for the migration lock: %w", err)
	}
	merr := s.migrate(ctx)
	if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLockKey); err != nil && merr == nil {
		return fmt.Errorf("sqlstore: release the migration lock: %w", err)
	}
	return merr
}

// pgConfig parses a PostgreSQL URL (or keyword=value string), adds the CA file as
// sslrootcert and the password, and refuses a plaintext connection to a host that is
// not on this machine.
func pgConfig(raw, password, caFile string) (*pgx.ConnConfig, error) {
	conn, err := withCAFile(raw, caFile)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: database URL: %s", redact(describeParseError(err), raw, password))
	}
	if password != "" {
		cfg.Password = password
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "registrar"
	}
	if host, ok := plaintextRemote(cfg); ok {
		return nil, fmt.Errorf("sqlstore: refusing to connect to %s without TLS: student records never cross the network in the clear; put sslmode=verify-full in the database URL and give the CA bundle (--database-ca-file)", host)
	}
	return cfg, nil
}

// withCAFile adds sslrootcert=caFile to a connection string, and sslmode=verify-full
// when it names no sslmode: a CA file means the server is to be verified.
func withCAFile(raw, caFile string) (string, error) {
	if caFile == "" {
		return raw, nil
	}
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", errors.New("sqlstore: the database URL does not parse")
		}
		q := u.Query()
		q.Set("sslrootcert", caFile)
		if q.Get("sslmode") == "" {
			q.Set("sslmode", "verify-full")
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(caFile) + "'"
	out := strings.TrimSpace(raw) + " sslrootcert=" + quoted
	if !strings.Contains(raw, "sslmode") {
		out += " sslmode=verify-full"
	}
	return strings.TrimSpace(out), nil
}

// describeParseError keeps pgx's reason but not the connection string it quotes.
func describeParseError(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		msg := pe.Error()
		if inner := errors.Unwrap(pe); inner != nil {
			var ue *url.Error
			if errors.As(inner, &ue) {
				return "not a valid URL: " + ue.Err.Error()
			}
			return inner.Error()
		}
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			return msg[i+2:]
		}
		return "does not parse"
	}
	return err.Error()
}

var keywordPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// redact removes the password, from Options or inside the URL, from a message.
func redact(msg, raw, password string) string {
	var secrets []string
	if password != "" {
		secrets = append(secrets, password)
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	if m := keywordPassword.FindStringSubmatch(raw); m != nil {
		secrets = append(secrets, strings.Trim(m[1], "'"))
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// plaintextRemote returns a host that cfg may reach without TLS (sslmode disable,
// allow or prefer) and that is not loopback or a Unix socket.
func plaintextRemote(cfg *pgx.ConnConfig) (string, bool) {
	type target struct {
		host string
		tls  *tls.Config
	}
	ts := []target{{cfg.Host, cfg.TLSConfig}}
	for _, f := range cfg.Fallbacks {
		ts = append(ts, target{f.Host, f.TLSConfig})
	}
	for _, t := range ts {
		if t.tls == nil && !localHost(t.host) {
			return t.host, true
		}
	}
	return "", false
}

func localHost(h string) bool {
	if strings.HasPrefix(h, "/") || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// weakTLS reports a TLS connection that does not verify the server (sslmode=require
// without a CA file).
func weakTLS(cfg *pgx.ConnConfig) bool {
	t := cfg.TLSConfig
	return t != nil && t.InsecureSkipVerify && t.VerifyPeerCertificate == nil && !localHost(cfg.Host)
}
