// Package pgtest gives tests and benchmarks a real PostgreSQL server: the one
// REGISTRAR_TEST_POSTGRES_URL names, or a throwaway server started from the installed
// programs (initdb from the newest /usr/lib/postgresql/*/bin, or on PATH) with its data
// in a temp dir, on a free loopback port, trust auth (but for StartTLS's password
// role), fsync off. As root it runs the server as the postgres user. Each test gets a
// database of its own (NewDatabase), so tests and packages can share one server.
//
// Start gives a server of the caller's own, which it may Stop and Restart on the same
// port and data (the database going away and coming back); Close removes it.
// StartTLS gives one that also serves TLS with a certificate from a CA made for the
// run (CAFile) and has one role that logs in only with its password (the store's
// connection tests). Without PostgreSQL, Shared, Start and StartTLS fail with a
// message saying how to install it; nothing is skipped.
package pgtest

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
	"os/exec"
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

// InstallHint says what to do when no server can be had.
const InstallHint = "the PostgreSQL tests need a PostgreSQL server: install it (apt-get install -y postgresql; ./scripts/test does) or point REGISTRAR_TEST_POSTGRES_URL at one (postgres://user@host:port/postgres?sslmode=disable)"

// Server is a PostgreSQL server for tests.
type Server struct {
	// Admin is the URL of its postgres database, as a superuser.
	Admin string
	// CAFile is the CA that signed the server's certificate (StartTLS only).
	CAFile string
	// PasswordUser logs in over TCP only with Password, by scram-sha-256 (StartTLS only).
	PasswordUser, Password string

	mu   sync.Mutex
	host string
	port int
	bin  string
	dir  string // removed by Close
	data string
	cred *syscall.Credential
	tls  bool // StartTLS: every start serves TLS with the certificate secure wrote
	cmd  *exec.Cmd
	done chan struct{}
}

var shared struct {
	once sync.Once
	srv  *Server
	own  bool
	err  error
}

// Shared returns the server of this test binary: REGISTRAR_TEST_POSTGRES_URL's, or
// one started on first use and stopped by Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv("REGISTRAR_TEST_POSTGRES_URL"); u != "" {
			shared.srv, shared.err = external(u)
			return
		}
		shared.srv, shared.err = Start()
		shared.own = shared.err == nil
	})
	if shared.err != nil {
		t.Fatalf("%v\n%s", shared.err, InstallHint)
	}
	return shared.srv
}

// ForTest returns REGISTRAR_TEST_POSTGRES_URL's server when it is set, and otherwise
// starts a server for t alone, closed when t ends (for packages without Main).
func ForTest(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv("REGISTRAR_TEST_POSTGRES_URL"); u != "" {
		return Shared(t)
	}
	s, err := Start()
	if err != nil {
		t.Fatalf("%v\n%s", err, InstallHint)
	}
	t.Cleanup(s.Close)
	return s
}

// Main runs the tests and then stops the shared server if this binary started one.
// Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.own {
		shared.srv.Close()
	}
	return code
}

func external(raw string) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("REGISTRAR_TEST_POSTGRES_URL does not answer: %w", err)
	}
	conn.Close(ctx)
	return &Server{Admin: raw}, nil
}

// NewDatabase creates an empty database (C locale) for one test, dropped after it,
// and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	u, err := s.CreateDatabase(context.Background(), "registrar_test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), u); err != nil {
			t.Error(err)
		}
	})
	return u
}

// CreateDatabase creates an empty database named prefix + a random suffix, from
// template0 with the C locale (a server created with any locale gives the same
// database), and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	b := make([]byte, 8)
	rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, s.Admin)
	if err != nil {
		return "", fmt.Errorf("connect to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	u, err := url.Parse(s.Admin)
	if err != nil {
		return "", fmt.Errorf("test server URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops a database CreateDatabase made, disconnecting its sessions.
func (s *Server) DropDatabase(ctx context.Context, dbURL string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := u.Path[1:]
	conn, err := pgx.Connect(ctx, s.Admin)
	if err != nil {
		return fmt.Errorf("drop test database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop test database %s: %w", name, err)
	}
	return nil
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
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server programs (initdb) in /usr/lib/postgresql/*/bin or on PATH")
}

// Start initdbs and starts a server of the caller's own on a free loopback port.
func Start() (*Server, error) { return start(false) }

// StartTLS is Start with TLS (CAFile) and a password role (PasswordUser, Password).
func StartTLS() (*Server, error) { return start(true) }

// passwordUser is the role StartTLS's server asks a password of.
const passwordUser = "registrar_pw"

func start(secure bool) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "registrar-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, host: "127.0.0.1", bin: bin, data: filepath.Join(dir, "data")}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	// The server refuses to run as root: run it as the postgres user, owning the dir.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if secure {
		if err := s.secure(); err != nil {
			return nil, err
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = s.run(); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.Admin = fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", s.host, s.port)
	if secure {
		if err := s.createPasswordUser(); err != nil {
			s.stopLocked() // s is not shared yet: no lock to hold
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// secure writes the certificates and a pg_hba.conf that trusts every role but
// PasswordUser over TCP, before the server first starts.
func (s *Server) secure() error {
	var err error
	if s.CAFile, err = s.writeCerts(); err != nil {
		return err
	}
	s.tls = true
	s.PasswordUser = passwordUser
	hba := "local all all trust\nhost all " + passwordUser + " 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
	return s.writeOwned(filepath.Join(s.data, "pg_hba.conf"), []byte(hba))
}

func (s *Server) createPasswordUser() error {
	pw := make([]byte, 12)
	rand.Read(pw)
	s.Password = "pw-" + hex.EncodeToString(pw)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.Admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE ROLE "+passwordUser+" LOGIN PASSWORD '"+s.Password+"'")
	return err
}

// writeOwned writes a file of the server's, owned by the user it runs as.
func (s *Server) writeOwned(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and localhost: the CA
// in the server's dir, its certificate and key in its data dir.
func (s *Server) writeCerts() (caFile string, err error) {
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
	caFile = filepath.Join(s.dir, "ca.crt")
	files := map[string][]byte{
		caFile:                              pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		filepath.Join(s.data, "server.crt"): pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		filepath.Join(s.data, "server.key"): pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for path, b := range files {
		if err := s.writeOwned(path, b); err != nil {
			return "", err
		}
	}
	return caFile, nil
}

// run starts postgres in the foreground as a child of this process and waits until
// it accepts connections. The parent-death signal stops it even if the test binary
// is killed before it can (the thread that starts it stays locked and alive).
func (s *Server) run() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("postgres-%d.log", s.port)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=" + s.host,
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "max_connections=300",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"} // throwaway data
	if s.tls {
		args = append(args, "-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(s.data, "server.crt"), "-c", "ssl_key_file="+filepath.Join(s.data, "server.key"))
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT}
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

// Stop shuts the server down fast (what pg_ctl stop -m fast does: sessions are
// terminated, open transactions roll back) and keeps its data for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart starts a stopped server again, on the same port with the same data.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return errors.New("pgtest: only a server Start or StartTLS made can restart")
	}
	if s.cmd != nil {
		return nil
	}
	return s.run()
}

// Close stops a server Start or StartTLS made and removes its files.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return
	}
	s.stopLocked()
	os.RemoveAll(s.dir)
	s.dir = ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ForEachEngine runs fn as the subtests "sqlite" and "postgres", one after the other,
// for tests whose stores open the engine of the subtest they are called in (EngineOf).
func ForEachEngine(t *testing.T, fn func(t *testing.T)) {
	t.Helper()
	for _, eng := range []string{"sqlite", "postgres"} {
		t.Run(eng, fn)
	}
}

// EngineOf is the engine of the ForEachEngine subtest t is (or is nested in):
// "postgres" or "sqlite".
func EngineOf(t testing.TB) string {
	if strings.Contains(t.Name()+"/", "/postgres/") {
		return "postgres"
	}
	return "sqlite"
}
