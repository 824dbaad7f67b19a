package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
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

// RevokeClient marks a client revoked: its tokens stop working at once in this
// process, and within clientTTL in any other on the same database.
func (t *Tx) RevokeClient(ctx context.Context, id string) error {
	t.onCommit = append(t.onCommit, func() { t.s.clients.drop(id) })
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
	c.Scopes, _ = decodeStrings(scopes) // written by PutClient as JSON lists
	c.Orgs, _ = decodeStrings(orgs)
	c.ContractRef, c.Purpose = contract.String, purpose.String
	c.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
	if revoked.Valid {
		t, _ := time.Parse(time.RFC3339Nano, revoked.String)
		c.RevokedAt = &t
	}
	return c, nil
}

// RecentClient is Client for the revocation check of every authenticated request:
// rows are kept in process for clientTTL, and a revocation committed by this process
// drops its row at once. Issuing a token reads the row itself (Client).
func (s *Store) RecentClient(ctx context.Context, id string) (records.Client, error) {
	if c, ok := s.clients.get(id, s.now()); ok {
		return c, nil
	}
	gen := s.clients.generation()
	c, err := s.Client(ctx, id)
	if err == nil {
		s.clients.put(id, c, s.now(), gen)
	}
	return c, err
}

// Client returns one client, revoked or not.
func (s *Store) Client(ctx context.Context, id string) (records.Client, error) {
	if records.ValidText(id) != nil { // no client id is such text; PostgreSQL could not compare it
		return records.Client{}, &records.Error{Code: records.NotFound, Message: "no client " + clipID(id)}
	}
	q := s.d.rebind("SELECT " + clientCols + " FROM clients WHERE client_id = ?")
	st, err := s.rstmt.get(ctx, q)
	if err != nil {
		return records.Client{}, unavailable("client", err)
	}
	var row *sql.Row
	if st != nil {
		row = st.QueryRowContext(ctx, id)
	} else {
		row = s.r.QueryRowContext(ctx, q, id)
	}
	c, err := scanClient(row)
	if errors.Is(err, sql.ErrNoRows) {
		return c, &records.Error{Code: records.NotFound, Message: "no client " + clipID(id)}
	}
	if err != nil {
		return c, unavailable("client", err)
	}
	return c, nil
}

// clientTTL bounds how long a client row read by this process is reused: how long
// a revocation made through another process (the CLI, another instance) takes to
// reach this one.
const clientTTL = time.Second

// clientCache keeps client rows read by RecentClient. A drop bumps the generation, so a row
// read before the drop (the old, unrevoked one) is not cached after it.
type clientCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]cachedClient
}

type cachedClient struct {
	c  records.Client
	at time.Time
}

func (cc *clientCache) get(id string, now time.Time) (records.Client, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.m[id]
	if !ok || now.Sub(e.at) >= clientTTL || now.Before(e.at) {
		return records.Client{}, false
	}
	return e.c, true
}

func (cc *clientCache) generation() uint64 {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.gen
}

func (cc *clientCache) put(id string, c records.Client, now time.Time, gen uint64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if gen != cc.gen {
		return
	}
	if cc.m == nil || len(cc.m) >= 4096 {
		cc.m = map[string]cachedClient{} // bounded: clients are few, tokens of unknown ids are not cached
	}
	cc.m[id] = cachedClient{c, now}
}

func (cc *clientCache) drop(id string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.gen++
	delete(cc.m, id)
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
