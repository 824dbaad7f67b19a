// Package bare is the baseline the per-endpoint throughput figures of issue 2 are
// compared with, shared by `go run ./bench` and the httpapi package's benchmark.
package bare

import (
	"context"
	"database/sql"
	"encoding/json"
	"net"
	"net/http"
	"strings"

	"registrar/records"

	_ "modernc.org/sqlite" // the same pure-Go driver registrar uses
)

// Server is the bare handler the per-endpoint figures are compared with: plain
// net/http and database/sql on the same SQLite file, running the same SQL as
// registrar (the same columns, joins and predicates) with no authentication,
// authorization scope, decryption, audit or OneRoster encoding. It serves
// GET /students/{id} and GET /classes/{id}/students.
type Server struct {
	URL string
	db  *sql.DB
	srv *http.Server
}

// Start opens the SQLite file at dbPath read-only and serves on a loopback port.
func Start(ctx context.Context, dbPath string) (*Server, error) {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)&_pragma=query_only(ON)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return serve(ctx, db, "?")
}

// serve prepares the two routes' SQL on db (arg is the engine's placeholder) and
// serves them on a loopback port. It closes db if it fails.
func serve(ctx context.Context, db *sql.DB, arg string) (*Server, error) {
	var cols []string
	for _, f := range records.User.Fields {
		if !f.Sensitive && f.Kind != records.KChildren {
			cols = append(cols, "t."+f.Column)
		}
	}
	cols = append(cols, "t.sealed", "k.wrapped")
	sel := "SELECT " + strings.Join(cols, ", ") + " FROM users t LEFT JOIN subject_keys k ON k.subject_id = t.sourced_id WHERE " +
		"EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student')"
	one, err := db.PrepareContext(ctx, sel+" AND t.sourced_id = "+arg)
	if err != nil {
		db.Close()
		return nil, err
	}
	ofClass, err := db.PrepareContext(ctx, sel+" AND t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id = "+arg+" AND e.role = 'student' AND e.status = 'active') ORDER BY t.sourced_id LIMIT 100 OFFSET 0")
	if err != nil {
		db.Close()
		return nil, err
	}
	rowsJSON := func(w http.ResponseWriter, rows *sql.Rows, err error, single bool) {
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer rows.Close()
		names, _ := rows.Columns()
		var list []map[string]any
		for rows.Next() {
			vals := make([]any, len(names))
			ptrs := make([]any, len(names))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			m := make(map[string]any, len(names))
			for i, n := range names {
				if b, ok := vals[i].([]byte); ok {
					vals[i] = string(b)
				}
				m[n] = vals[i]
			}
			list = append(list, m)
		}
		w.Header().Set("Content-Type", "application/json")
		if single {
			if len(list) == 0 {
				http.NotFound(w, nil)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"user": list[0]}) // benchmark: client gone is fine
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"users": list})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /students/{id}", func(w http.ResponseWriter, r *http.Request) {
		rows, err := one.QueryContext(r.Context(), r.PathValue("id"))
		rowsJSON(w, rows, err, true)
	})
	mux.HandleFunc("GET /classes/{id}/students", func(w http.ResponseWriter, r *http.Request) {
		rows, err := ofClass.QueryContext(r.Context(), r.PathValue("id"))
		rowsJSON(w, rows, err, false)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		return nil, err
	}
	b := &Server{URL: "http://" + ln.Addr().String(), db: db, srv: &http.Server{Handler: mux}}
	go b.srv.Serve(ln) //nolint:errcheck // stopped by close
	return b, nil
}

// Close stops the server and closes the database.
func (b *Server) Close() {
	b.srv.Close()
	b.db.Close()
}
