package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"registrar/records"
)

// UserRoles returns a user's roles and whether the user exists, is active and enabled.
func (s *Store) UserRoles(ctx context.Context, id string) ([]records.Role, bool, error) {
	var rolesJSON, status, enabled sql.NullString
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT roles, status, enabled_user FROM users WHERE sourced_id = ?"), id).Scan(&rolesJSON, &status, &enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("user roles", err)
	}
	var roles []records.Role
	if rolesJSON.Valid {
		if err := json.Unmarshal([]byte(rolesJSON.String), &roles); err != nil {
			return nil, false, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
		}
	}
	return roles, status.String == records.StatusActive && enabled.String != "false", nil
}

// Agents returns the users linked to id as agents, in either direction (a parent lists
// the child, or the child lists the parent).
func (s *Store) Agents(ctx context.Context, id string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(
		"SELECT ref_id FROM user_agents WHERE owner_id = ? UNION SELECT owner_id FROM user_agents WHERE ref_id = ? ORDER BY 1"), id, id)
	if err != nil {
		return nil, unavailable("agents", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, unavailable("agents", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Birth returns a student's birth date (decrypted from demographics) and grades.
func (s *Store) Birth(ctx context.Context, id string) (string, []string, error) {
	var grades []string
	var g sql.NullString
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT grades FROM users WHERE sourced_id = ?"), id).Scan(&g)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", nil, unavailable("grades", err)
	}
	if g.Valid {
		_ = json.Unmarshal([]byte(g.String), &grades) // written by us as a JSON list
	}
	obj, err := s.Get(ctx, Query{Entity: records.Demographics, Fields: []string{"birthDate"}}, id)
	if records.IsNotFound(err) {
		return "", grades, nil
	}
	if err != nil {
		return "", nil, err
	}
	return obj.Str("birthDate"), grades, nil
}

// ExpandOrgs returns orgs and all their descendants, and whether any of orgs is a root
// (an org without a parent: the district).
func (s *Store) ExpandOrgs(ctx context.Context, orgs []string) ([]string, bool, error) {
	if len(orgs) == 0 {
		return nil, false, nil
	}
	for _, o := range orgs {
		if o == "*" { // the whole district (every root org and everything under it)
			return nil, true, nil
		}
	}
	seen := map[string]bool{}
	var out []string
	root := false
	frontier := append([]string(nil), orgs...)
	for _, o := range orgs {
		var parent sql.NullString
		err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT parent_id FROM orgs WHERE sourced_id = ?"), o).Scan(&parent)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, false, unavailable("orgs", err)
		}
		if !parent.Valid || parent.String == "" {
			root = true
		}
	}
	for len(frontier) > 0 && len(out) < 100000 {
		o := frontier[0]
		frontier = frontier[1:]
		if seen[o] {
			continue
		}
		seen[o] = true
		out = append(out, o)
		rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT sourced_id FROM orgs WHERE parent_id = ?"), o)
		if err != nil {
			return nil, false, unavailable("orgs", err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return nil, false, unavailable("orgs", err)
			}
			frontier = append(frontier, c)
		}
		rows.Close()
	}
	return out, root, nil
}
