package sqlstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql/driver"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"registrar/records"
)

func TestPostgresConfig(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	// Any CA certificate will do for parsing the configuration.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, url, password, ca string
		wantErr                 string // substring; "" for success
		check                   func(t *testing.T, c *configView)
	}{
		{name: "loopback without TLS is allowed", url: "postgres://u@127.0.0.1:5432/db?sslmode=disable"},
		{name: "localhost without TLS is allowed", url: "postgres://u@localhost/db?sslmode=disable"},
		{name: "a Unix socket is allowed", url: "host=/var/run/postgresql dbname=db user=u sslmode=disable"},
		{name: "a remote host without TLS is refused", url: "postgres://u@db.example.org/db?sslmode=disable", wantErr: "without TLS"},
		{name: "a remote host with sslmode=prefer is refused (it may fall back to plaintext)", url: "postgres://u@db.example.org/db?sslmode=prefer", wantErr: "without TLS"},
		{name: "a remote host with no sslmode is refused", url: "postgres://u@10.1.2.3/db", wantErr: "without TLS"},
		{name: "a remote host with sslmode=require is allowed", url: "postgres://u@db.example.org/db?sslmode=require"},
		{name: "a CA file makes verify-full", url: "postgres://u@db.example.org/db", ca: ca, check: func(t *testing.T, c *configView) {
			if c.tls == nil || c.tls.InsecureSkipVerify || c.tls.ServerName != "db.example.org" || c.tls.RootCAs == nil {
				t.Errorf("TLS config %+v: want verify-full against the CA for db.example.org", c.tls)
			}
		}},
		{name: "a CA file in keyword form", url: "host=db.example.org dbname=db user=u", ca: ca, check: func(t *testing.T, c *configView) {
			if c.tls == nil || c.tls.InsecureSkipVerify || c.tls.RootCAs == nil {
				t.Errorf("TLS config %+v: want verify-full", c.tls)
			}
		}},
		{name: "an explicit sslmode stays", url: "postgres://u@db.example.org/db?sslmode=verify-ca", ca: ca, check: func(t *testing.T, c *configView) {
			if c.tls == nil || c.tls.VerifyPeerCertificate == nil {
				t.Errorf("TLS config %+v: want verify-ca", c.tls)
			}
		}},
		{name: "the configured password wins over the URL's", url: "postgres://u:inurl@127.0.0.1/db?sslmode=disable", password: "configured", check: func(t *testing.T, c *configView) {
			if c.password != "configured" {
				t.Errorf("password %q, want the configured one", c.password)
			}
		}},
		{name: "defaults: connect timeout and application name", url: "postgres://u@127.0.0.1/db?sslmode=disable", check: func(t *testing.T, c *configView) {
			if c.timeout == 0 || c.app != "registrar" {
				t.Errorf("connect timeout %v, application_name %q", c.timeout, c.app)
			}
		}},
		{name: "a bad URL does not print its password", url: "postgres://u:s3cretpw@127.0.0.1:notaport/db", wantErr: "database URL"},
		{name: "a bad keyword string does not print its password", url: "host=127.0.0.1 password=s3cretpw port=notaport", wantErr: "database URL"},
		{name: "a missing CA file is an error", url: "postgres://u@db.example.org/db", ca: "/nonexistent/ca.pem", wantErr: "CA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := pgConfig(c.url, c.password, c.ca)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "s3cretpw") {
					t.Errorf("the error prints the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if c.check != nil {
				c.check(t, &configView{tls: cfg.TLSConfig, password: cfg.Password, timeout: cfg.ConnectTimeout, app: cfg.RuntimeParams["application_name"]})
			}
		})
	}
}

type configView struct {
	tls      *tls.Config
	password string
	timeout  time.Duration
	app      string
}

func TestPostgresDialect(t *testing.T) {
	d := postgresDialect{}
	if got := d.rebind("a = ? AND b IN (?, ?)"); got != "a = $1 AND b IN ($2, $3)" {
		t.Errorf("rebind: got %q", got)
	}
	ddl := d.ddl("CREATE TABLE x (id {{serial}}, b {{blob}}, r {{real}}, n {{bigint}}, t TEXT NOT NULL, context TEXT)")
	want := `CREATE TABLE x (id BIGSERIAL PRIMARY KEY, b BYTEA, r DOUBLE PRECISION, n BIGINT, t TEXT COLLATE "C" NOT NULL, context TEXT COLLATE "C")`
	if ddl != want {
		t.Errorf("ddl:\n got %s\nwant %s", ddl, want)
	}
	// The JSON predicate has exactly one placeholder: no ? operator for rebind to eat.
	if n := strings.Count(d.jsonContains("t.grades"), "?"); n != 1 {
		t.Errorf("jsonContains has %d question marks, want 1 (the placeholder)", n)
	}
}

// TestUnavailable: whatever pgx or database/sql says when the server is gone becomes
// records.Unavailable; a caller's own cancellation stays itself.
func TestUnavailable(t *testing.T) {
	for _, err := range []error{
		&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"},
		&pgconn.PgError{Code: "08006"},
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		driver.ErrBadConn,
		fmt.Errorf("wrapped: %w", errors.New("unexpected EOF")),
	} {
		if got := records.ErrorCode(unavailable("op", err)); got != records.Unavailable {
			t.Errorf("%v: got %s, want %s", err, got, records.Unavailable)
		}
	}
	if got := unavailable("op", context.Canceled); !errors.Is(got, context.Canceled) {
		t.Errorf("cancellation: got %v", got)
	}
}
