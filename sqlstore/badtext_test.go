package sqlstore_test

import (
	"context"
	"errors"
	"testing"

	"registrar/records"
)

// Text PostgreSQL's text type cannot hold (a NUL byte, bytes that are not UTF-8),
// where SQLite would take it. A client lookup by such an id finds no client on either
// engine; and a query that is handed such a value anyway fails as the request's
// fault (Invalid: 400), never as "the database is not answering" (Unavailable: 503,
// which tells the caller to retry the same request and reads as an outage).
func TestTextPostgreSQLCannotHold(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		s := district(t, eng)
		ctx := context.Background()
		for _, id := range []string{"\x00", "client\x00", "\xff\xfe", "caf\xe9"} {
			if _, err := s.Client(ctx, id); !records.IsNotFound(err) {
				t.Errorf("Client(%q): %v, want not found", id, err)
			}
			// Caseload reads by the id as given: the backstop's case.
			_, err := s.Caseload(ctx, id)
			var re *records.Error
			switch {
			case err == nil:
				// SQLite: no rows for such an id.
				if eng.name == "postgres" {
					t.Errorf("Caseload(%q) on PostgreSQL: no error; it cannot compare such text", id)
				}
			case !errors.As(err, &re) || re.Code != records.Invalid:
				t.Errorf("Caseload(%q): %v, want an Invalid records.Error", id, err)
			}
		}
	})
}
