package httpapi_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the sample ids are read straight from the database

	"registrar/authn"
	"registrar/authz"
	"registrar/bench/bare"
	"registrar/cache"
	"registrar/gen"
	"registrar/httpapi"
	"registrar/importer"
	"registrar/internal/pgtest"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// BenchmarkEndpointsPostgres is BenchmarkEndpoints on PostgreSQL (issue 7: the core
// read benchmarks on PostgreSQL): GET /students/{id} and GET /classes/{id}/students
// over a generated district of REGISTRAR_BENCH_STUDENTS students (default 10,000)
// imported into a PostgreSQL database, each beside bare.StartPostgres (plain net/http
// and database/sql through pgx running the same SQL on the same database, with no
// authentication, authorization, decryption or audit) in the same run, served over
// loopback HTTP to the same closed-loop clients. The server is the one
// REGISTRAR_TEST_POSTGRES_URL names, or one started on loopback for the benchmark
// (internal/pgtest: fsync off, so writes such as the audit trail's commits cost less
// than on a durable server). The registrar server is wired as `registrar serve` wires
// it, the caller an LMS client of the whole district whose reads are audited.
// ratio is registrar's throughput over the baseline's.
func BenchmarkEndpointsPostgres(b *testing.B) {
	ctx := context.Background()
	students := 10000
	if s := os.Getenv("REGISTRAR_BENCH_STUDENTS"); s != "" {
		students, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	cfg := gen.Defaults(students)
	cfg.LineItemsPerClass = 0 // rostering only: the two endpoints read users and enrollments
	if _, err := gen.WriteCSV(ctx, filepath.Join(dir, "pkg"), cfg); err != nil {
		b.Fatal(err)
	}
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	dbURL := pgtest.ForTest(b).NewDatabase(b)
	st, err := sqlstore.Open(ctx, sqlstore.Options{URL: dbURL, Chain: "bench", Vault: v, Logger: log, NoAuditForBenchmarks: os.Getenv("REGISTRAR_BENCH_NO_AUDIT") != ""})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if _, err := importer.New(st, log).Import(ctx, filepath.Join(dir, "pkg"), importer.Options{}); err != nil {
		b.Fatal(err)
	}

	auth, err := authn.New(st, v, time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	c := cache.NewMemory(cache.MemoryOptions{})
	auth.SetVerifiedCache(c, 5*time.Minute)
	secret, hash := authn.NewSecret()
	client := records.Client{ID: vault.RandomID(), Name: "bench LMS", SecretHash: hash, Scopes: []string{authz.RosterCoreReadonly},
		Orgs: []string{"*"}, LegalBasis: authz.BasisSchoolOfficial, ContractRef: "bench-1", Purpose: "benchmark"}
	if err := st.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, client) }); err != nil {
		b.Fatal(err)
	}
	tok, err := auth.IssueClientToken(ctx, client.ID, secret, "")
	if err != nil {
		b.Fatal(err)
	}
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC, Cache: c})
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	base, err := bare.StartPostgres(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(base.Close)

	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	measureEndpoints(b, db, srv.URL, tok.AccessToken, base.URL)
}
