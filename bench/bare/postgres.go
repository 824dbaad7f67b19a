package bare

import (
	"context"
	"database/sql"

	_ "github.com/jackc/pgx/v5/stdlib" // the driver registrar uses on PostgreSQL
)

// StartPostgres is Start on PostgreSQL: the same two routes and the same SQL on the
// database at url (a registrar database), through pgx's database/sql driver with a
// pool of readers as large as registrar's default (10), with no authentication,
// authorization scope, decryption, audit or OneRoster encoding.
func StartPostgres(ctx context.Context, url string) (*Server, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(10)
	db.SetMaxIdleConns(10)
	return serve(ctx, db, "$1")
}
