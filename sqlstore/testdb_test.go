package sqlstore_test

// The PostgreSQL server the store tests run against: REGISTRAR_TEST_POSTGRES_URL's
// when it is set (any database on it; the tests create their own), otherwise one this
// binary starts with TLS and a password role (internal/pgtest's StartTLS), which
// TestMain stops. Each test gets a database of its own, so tests and packages can run
// in parallel on one server.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/internal/pgtest"
)

var pgOwn struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
}

// TestMain stops the servers the tests started, if any.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if pgOwn.srv != nil {
		pgOwn.srv.Close()
	}
	os.Exit(code)
}

// postgresServer returns the server for this test binary, starting one if needed.
func postgresServer(t testing.TB) *pgtest.Server {
	t.Helper()
	if os.Getenv("REGISTRAR_TEST_POSTGRES_URL") != "" {
		return pgtest.Shared(t)
	}
	return ownPostgresServer(t)
}

// ownPostgresServer returns a server this binary started (with TLS), even when
// REGISTRAR_TEST_POSTGRES_URL names another: the TLS tests need its CA.
func ownPostgresServer(t testing.TB) *pgtest.Server {
	t.Helper()
	pgOwn.once.Do(func() { pgOwn.srv, pgOwn.err = pgtest.StartTLS() })
	if pgOwn.err != nil {
		t.Fatalf("%v\n%s", pgOwn.err, pgtest.InstallHint)
	}
	return pgOwn.srv
}

// otherCA writes a CA that signed nothing of the server's: verification must fail.
func otherCA(t testing.TB) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "unrelated CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// proxy forwards TCP connections to a server and can be cut (every connection
// dropped, new ones refused) and restored: a database that goes away and comes back.
type proxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.wg.Add(2)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			dst.Close()
			src.Close()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// cut drops every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// hostPort returns host:port of a postgres:// URL.
func hostPort(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if !strings.Contains(host, ":") {
		host += ":5432"
	}
	return host
}
