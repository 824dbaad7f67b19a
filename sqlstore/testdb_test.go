package sqlstore_test

// The PostgreSQL server the store tests run against. REGISTRAR_TEST_POSTGRES_URL names
// one (any database on it; the tests create their own); otherwise the first test that
// needs it starts a throwaway server from the installed binaries: initdb into a temp
// dir (as the postgres user when running as root), a free loopback port, trust auth,
// TLS with a CA made for the run. TestMain stops it. Each test gets a database of its
// own, so tests and packages can run in parallel on one server.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	osexec "os/exec" // exec is a helper of keys_test.go
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const installHint = "the PostgreSQL store tests need a PostgreSQL server: install it (apt-get install -y postgresql; ./scripts/test does) or point REGISTRAR_TEST_POSTGRES_URL at one (postgres://user@host:port/postgres?sslmode=disable)"

var pgShared struct {
	once sync.Once
	srv  *pgServer
	err  error
}

var pgOwn struct {
	once sync.Once
	srv  *pgServer
	err  error
}

// TestMain stops the server the tests started, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*pgServer{pgShared.srv, pgOwn.srv} {
		if s != nil && s.cmd != nil {
			s.stop()
		}
	}
	os.Exit(code)
}

// pgServer is a PostgreSQL server for the tests.
type pgServer struct {
	admin  string // URL of its postgres database, as a superuser
	caFile string // the CA that signed its certificate (servers the tests started)
	// pwUser logs in only with password pwPass (scram-sha-256; servers the tests started).
	pwUser, pwPass string
	host           string
	port           int

	dir  string
	cmd  *osexec.Cmd
	done chan struct{}
}

// postgresServer returns the server for this test binary, starting one if needed.
func postgresServer(t testing.TB) *pgServer {
	t.Helper()
	pgShared.once.Do(func() {
		if u := os.Getenv("REGISTRAR_TEST_POSTGRES_URL"); u != "" {
			pgShared.srv, pgShared.err = externalServer(u)
			return
		}
		pgOwn.once.Do(func() { pgOwn.srv, pgOwn.err = startServer() })
		pgShared.srv, pgShared.err = pgOwn.srv, pgOwn.err
	})
	if pgShared.err != nil {
		t.Fatalf("%v\n%s", pgShared.err, installHint)
	}
	return pgShared.srv
}

// ownPostgresServer returns a server this binary started (with TLS), even when
// REGISTRAR_TEST_POSTGRES_URL names another: the TLS tests need its CA.
func ownPostgresServer(t testing.TB) *pgServer {
	t.Helper()
	pgOwn.once.Do(func() { pgOwn.srv, pgOwn.err = startServer() })
	if pgOwn.err != nil {
		t.Fatalf("%v\n%s", pgOwn.err, installHint)
	}
	return pgOwn.srv
}

func externalServer(raw string) (*pgServer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("REGISTRAR_TEST_POSTGRES_URL does not answer: %w", err)
	}
	conn.Close(ctx)
	return &pgServer{admin: raw}, nil
}

// newDatabase creates an empty database for one test and drops it after.
func (s *pgServer) newDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 8)
	rand.Read(b)
	name := "registrar_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	// template0 and the C locale: a server created with any locale gives the same database.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.admin)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.admin)
	if err != nil {
		t.Fatalf("test server URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// binDir finds the newest installed PostgreSQL's programs.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := osexec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server programs (initdb) in /usr/lib/postgresql/*/bin or on PATH")
}

// startServer initdbs and starts a server on a free loopback port.
func startServer() (*pgServer, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "registrar-pg-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, host: "127.0.0.1"}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	// The server refuses to run as root: run it as the postgres user, owning the dir.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := osexec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if s.caFile, err = writeCerts(dir, data, cred); err != nil {
		return nil, err
	}
	// Trust, except for one role that must give its password.
	s.pwUser = "registrar_pw"
	hba := "local all all trust\nhost all " + s.pwUser + " 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(filepath.Join(data, "pg_hba.conf"), int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = s.run(bin, data, cred); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.admin = fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", s.host, s.port)
	pw := make([]byte, 12)
	rand.Read(pw)
	s.pwPass = "pw-" + hex.EncodeToString(pw)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		s.stop()
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+s.pwUser+" LOGIN PASSWORD '"+s.pwPass+"'"); err != nil {
		s.stop()
		return nil, err
	}
	ok = true
	return s, nil
}

// run starts postgres in the foreground as a child of this process, and waits until it
// accepts connections. The parent-death signal stops it even if the test binary is
// killed before TestMain can (the thread that starts it stays locked and alive).
func (s *pgServer) run(bin, data string, cred *syscall.Credential) error {
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("postgres-%d.log", s.port)))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := osexec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses="+s.host,
		"-c", "unix_socket_directories="+s.dir,
		"-c", "max_connections=300",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", // throwaway data
		"-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(data, "server.crt"), "-c", "ssl_key_file="+filepath.Join(data, "server.key"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: Pdeathsig follows this thread
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	admin := fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable&connect_timeout=2", s.host, s.port)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			s.cmd = nil
			return fmt.Errorf("postgres exited:\n%s", b)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, admin)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			s.cmd = nil
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("postgres did not accept connections within a minute: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the server down fast (what pg_ctl stop -m fast does) and removes its files.
func (s *pgServer) stop() {
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and localhost.
func writeCerts(dir, data string, cred *syscall.Credential) (caFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registrar test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	caFile = filepath.Join(dir, "ca.crt")
	files := map[string][]byte{
		caFile:                            pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		filepath.Join(data, "server.crt"): pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		filepath.Join(data, "server.key"): pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", err
		}
		if cred != nil {
			if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
				return "", err
			}
		}
	}
	return caFile, nil
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
