package sqlstore

import (
	"context"
	"fmt"

	"registrar/audit"
)

// VerifyAudit checks every chain of the audit trail from its first event and returns
// the number of events verified, or a *audit.Break naming the first bad place.
func (s *Store) VerifyAudit(ctx context.Context) (int64, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT DISTINCT chain FROM audit_events ORDER BY chain")
	if err != nil {
		return 0, unavailable("audit chains", err)
	}
	var chains []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return 0, unavailable("audit chains", err)
		}
		chains = append(chains, c)
	}
	rows.Close()
	var total int64
	for _, c := range chains {
		n, err := s.verifyChain(ctx, c)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) verifyChain(ctx context.Context, chain string) (int64, error) {
	v := audit.NewVerifier(chain)
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT seq, body, prev, hash FROM audit_events WHERE chain = ? ORDER BY seq"), chain)
	if err != nil {
		return 0, unavailable("audit events", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := audit.Record{Chain: chain}
		var body string
		if err := rows.Scan(&r.Seq, &body, &r.Prev, &r.Hash); err != nil {
			return v.Count, fmt.Errorf("read audit event: %w", err)
		}
		r.Body = []byte(body)
		if err := v.Next(r); err != nil {
			return v.Count, err
		}
	}
	return v.Count, rows.Err()
}
