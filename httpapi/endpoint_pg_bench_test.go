package httpapi_test

import (
	"context"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the sample ids are read straight from the database

	"registrar/bench/bare"
	"registrar/internal/pgtest"
	"registrar/sqlstore"
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
	dbURL := pgtest.ForTest(b).NewDatabase(b)
	benchEndpoints(b, sqlstore.Options{URL: dbURL}, "pgx", dbURL,
		func(ctx context.Context) (*bare.Server, error) { return bare.StartPostgres(ctx, dbURL) })
}
