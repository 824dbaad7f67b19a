package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"registrar/records"
)

// PutClient registers a client.
func (t *Tx) PutClient(ctx context.Context, c records.Client) error {
	scopes, _ := json.Marshal(c.Scopes)
	orgs, _ := json.Marshal(c.Orgs)
	_, err := t.exec(ctx, "INSERT INTO clients (client_id, name, secret_hash, scopes, orgs, legal_basis, contract_ref, purpose, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.Name, c.SecretHash, string(scopes), string(orgs), c.LegalBasis, nullIfEmpty(c.ContractRef), nullIfEmpty(c.Purpose), records.FormatDateTime(t.now))
	if err != nil {
		return unavailable("put client", err)
	}
	return nil
}

// RevokeClient marks a client revoked: its tokens stop working at once.
func (t *Tx) RevokeClient(ctx context.Context, id string) error {
	res, err := t.exec(ctx, "UPDATE clients SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL", records.FormatDateTime(t.now), id)
	if err != nil {
		return unavailable("revoke client", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &records.Error{Code: records.NotFound, Message: "no active client " + clipID(id)}
	}
	return nil
}

const clientCols = "client_id, name, secret_hash, scopes, orgs, legal_basis, contract_ref, purpose, created_at, revoked_at"

func scanClient(sc interface{ Scan(...any) error }) (records.Client, error) {
	var c records.Client
	var scopes, orgs, created string
	var contract, purpose, revoked sql.NullString
	if err := sc.Scan(&c.ID, &c.Name, &c.SecretHash, &scopes, &orgs, &c.LegalBasis, &contract, &purpose, &created, &revoked); err != nil {
		return c, err
	}
	_ = json.Unmarshal([]byte(scopes), &c.Scopes) // written by PutClient as JSON lists
	_ = json.Unmarshal([]byte(orgs), &c.Orgs)
	c.ContractRef, c.Purpose = contract.String, purpose.String
	c.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
	if revoked.Valid {
		t, _ := time.Parse(time.RFC3339Nano, revoked.String)
		c.RevokedAt = &t
	}
	return c, nil
}

// Client returns one client, revoked or not.
func (s *Store) Client(ctx context.Context, id string) (records.Client, error) {
	c, err := scanClient(s.r.QueryRowContext(ctx, s.d.rebind("SELECT "+clientCols+" FROM clients WHERE client_id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, &records.Error{Code: records.NotFound, Message: "no client " + clipID(id)}
	}
	if err != nil {
		return c, unavailable("client", err)
	}
	return c, nil
}

// Clients lists every client, oldest first.
func (s *Store) Clients(ctx context.Context) ([]records.Client, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+clientCols+" FROM clients ORDER BY created_at, client_id")
	if err != nil {
		return nil, unavailable("clients", err)
	}
	defer rows.Close()
	var out []records.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, unavailable("clients", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// UserByClaim finds the active user whose email (through its blind index) or username
// equals value: how a person's OIDC token maps to a roster user.
func (s *Store) UserByClaim(ctx context.Context, claim, value string) (string, error) {
	var q string
	var arg any
	switch claim {
	case "email":
		q, arg = "SELECT sourced_id FROM users WHERE email_bidx = ? AND status = 'active' ORDER BY sourced_id LIMIT 2", s.vault.BlindIndex("email", value)
	case "username":
		q, arg = "SELECT sourced_id FROM users WHERE username = ? AND status = 'active' ORDER BY sourced_id LIMIT 2", value
	default:
		return "", &records.Error{Code: records.Internal, Message: "internal error"}
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q), arg)
	if err != nil {
		return "", unavailable("user by claim", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return "", unavailable("user by claim", err)
		}
		ids = append(ids, id)
	}
	if len(ids) != 1 {
		// None, or ambiguous: either way nobody is authenticated.
		return "", &records.Error{Code: records.Unauthorized, Message: "the token's " + claim + " matches no single roster user"}
	}
	return ids[0], rows.Err()
}
