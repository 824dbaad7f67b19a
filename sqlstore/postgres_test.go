package sqlstore_test

// What only PostgreSQL has: a server that goes away, a reader endpoint, TLS, a password.

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"

	T "registrar/internal/testdistrict"
)

// withHost returns raw with its host:port replaced and query parameters set.
func withHost(t testing.TB, raw, hostport string, params ...string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if hostport != "" {
		u.Host = hostport
	}
	q := u.Query()
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] == "" {
			q.Del(params[i])
		} else {
			q.Set(params[i], params[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// TestPostgresOutage cuts the connection to the database under a running store: every
// call answers records.Unavailable (the HTTP layer's 503 with Retry-After), nothing
// panics, and once the database is back the store works on without a restart and its
// audit chain still verifies.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	db := postgresServer(t).NewDatabase(t)
	p := newProxy(t, hostPort(t, db))
	s := open(t, sqlstore.Options{URL: withHost(t, db, p.addr(), "connect_timeout", "3")})
	if err := T.Load(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, event("before")); err != nil {
		t.Fatal(err)
	}
	p.cut()
	f, _ := query.ParseFilter("familyName='Minor'")
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, sqlstore.Query{Entity: records.User}, T.Minor); return err }},
		{"List", func() error {
			_, err := s.List(ctx, sqlstore.Query{Entity: records.User, Filter: f, Page: query.Page{Limit: 1}})
			return err
		}},
		{"Exists", func() error { return s.Exists(ctx, records.User, records.Predicate{}, T.Minor) }},
		{"Write", func() error {
			return s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.Put(ctx, records.Category, records.Object{"sourcedId": "cat-down", "status": "active", "title": "x"}, sqlstore.PutOptions{})
				return err
			})
		}},
		{"Audit", func() error { return s.Audit(ctx, event("during")) }},
		{"UserRoles", func() error { _, _, err := s.UserRoles(ctx, T.TeacherA); return err }},
		{"Agents", func() error { _, err := s.Agents(ctx, T.Minor); return err }},
		{"Birth", func() error { _, _, err := s.Birth(ctx, T.Minor); return err }},
		{"ExpandOrgs", func() error { _, _, err := s.ExpandOrgs(ctx, []string{T.District}); return err }},
		{"Client", func() error { _, err := s.Client(ctx, "c"); return err }},
		{"Clients", func() error { _, err := s.Clients(ctx); return err }},
		{"UserByClaim", func() error { _, err := s.UserByClaim(ctx, "username", T.TeacherA); return err }},
		{"VerifyAudit", func() error { _, err := s.VerifyAudit(ctx); return err }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.call()
		if records.ErrorCode(err) != records.Unavailable {
			t.Errorf("%s with the database down: got %v (code %s), want %s", c.name, err, records.ErrorCode(err), records.Unavailable)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s took %v to fail", c.name, d)
		}
	}
	if err := s.Ping(ctx); err == nil {
		t.Errorf("Ping with the database down: got nil")
	}
	// Another instance starting now fails to open, quickly and clearly.
	_, err := sqlstore.Open(ctx, sqlstore.Options{URL: withHost(t, db, p.addr(), "connect_timeout", "2"), Chain: "x", Vault: newVault(t), Logger: quiet})
	if err == nil {
		t.Errorf("Open with the database down: got nil")
	}

	p.restore()
	put(t, s, records.Category, records.Object{"sourcedId": "cat-up", "status": "active", "title": "back"})
	if _, err := s.Get(ctx, sqlstore.Query{Entity: records.Category}, "cat-up"); err != nil {
		t.Errorf("read after the database came back: %v", err)
	}
	if err := s.Audit(ctx, event("after")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.VerifyAudit(ctx); err != nil || n != 2 { // before and after; the one during failed
		t.Errorf("verify after the outage: %d events, %v; want 2", n, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping after the outage: %v", err)
	}
}

// TestPostgresReaderURL points reads at a second, read-only database (a replica
// stand-in): reads come from it, writes and migrations never touch it.
func TestPostgresReaderURL(t *testing.T) {
	t.Parallel()
	srv := postgresServer(t)
	writer, reader := srv.NewDatabase(t), srv.NewDatabase(t)
	r := open(t, sqlstore.Options{URL: reader})
	put(t, r, records.Org, records.Object{"sourcedId": "org-only-on-reader", "status": "active", "name": "Replica", "type": "district"})
	r.Close()
	admin, err := pgx.Connect(ctx, srv.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	u, _ := url.Parse(reader)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+strings.TrimPrefix(u.Path, "/")+" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}

	s := open(t, sqlstore.Options{URL: writer, ReaderURL: reader})
	put(t, s, records.Org, records.Object{"sourcedId": "org-written", "status": "active", "name": "Primary", "type": "district"})
	if _, err := s.Get(ctx, sqlstore.Query{Entity: records.Org}, "org-only-on-reader"); err != nil {
		t.Errorf("a read did not go to the reader: %v", err)
	}
	_, err = s.Get(ctx, sqlstore.Query{Entity: records.Org}, "org-written")
	wantCode(t, err, records.NotFound)
	if n := count(t, s, "SELECT COUNT(*) FROM orgs WHERE sourced_id = 'org-written'"); n != 1 {
		t.Errorf("the write is not on the writer: %d rows", n)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
}

// TestPostgresTLS connects with sslmode=verify-full and the server's CA, and fails
// against a CA that did not sign the server's certificate.
func TestPostgresTLS(t *testing.T) {
	t.Parallel()
	srv := ownPostgresServer(t)
	db := srv.NewDatabase(t)
	for _, c := range []struct {
		name string
		url  string
	}{
		{"a CA file alone means verify-full", withHost(t, db, "localhost:"+portOf(t, db), "sslmode", "")},
		{"verify-full by IP address", withHost(t, db, "", "sslmode", "verify-full")},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, sqlstore.Options{URL: c.url, CAFile: srv.CAFile})
			var ssl bool
			if err := s.RawDB().QueryRowContext(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
				t.Errorf("connection encrypted: %v, %v; want true", ssl, err)
			}
		})
	}
	t.Run("an unrelated CA is refused", func(t *testing.T) {
		_, err := sqlstore.Open(ctx, sqlstore.Options{URL: withHost(t, db, "", "sslmode", "verify-full"), CAFile: otherCA(t), Chain: "x", Vault: newVault(t), Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("got %v, want a certificate error", err)
		}
	})
}

func portOf(t testing.TB, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestPostgresPassword logs in with the password from the configuration (not the
// URL), and never prints a password: not in an error, not in a log line.
func TestPostgresPassword(t *testing.T) {
	t.Parallel()
	srv := ownPostgresServer(t)
	db := srv.NewDatabase(t)
	admin, err := pgx.Connect(ctx, srv.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	u, _ := url.Parse(db)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+strings.TrimPrefix(u.Path, "/")+" OWNER TO "+srv.PasswordUser); err != nil {
		t.Fatal(err)
	}
	u.User = url.User(srv.PasswordUser)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	s := open(t, sqlstore.Options{URL: u.String(), Password: srv.Password, Logger: log})
	put(t, s, records.Category, records.Object{"sourcedId": "cat-pw", "status": "active", "title": "with a password"})

	const wrong = "Wr0ng-pa55word"
	_, err = sqlstore.Open(ctx, sqlstore.Options{URL: u.String(), Password: wrong, Chain: "x", Vault: newVault(t), Logger: log})
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	inURL := *u
	inURL.User = url.UserPassword(srv.PasswordUser, "url-pa55word")
	inURL.Host = "127.0.0.1:notaport"
	_, err2 := sqlstore.Open(ctx, sqlstore.Options{URL: inURL.String(), Chain: "x", Vault: newVault(t), Logger: log})
	if err2 == nil {
		t.Fatal("a URL with a bad port was accepted")
	}
	for _, text := range []string{err.Error(), err2.Error(), logs.String()} {
		for _, secret := range []string{srv.Password, wrong, "url-pa55word"} {
			if strings.Contains(text, secret) {
				t.Errorf("a password is printed: %q", text)
			}
		}
	}
}
