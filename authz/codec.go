package authz

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
)

// scopeWire is a Scope as a cache holds it: ids, dates and flags, never a birth date
// or any other field value, and never the principal (the request brings its own).
type scopeWire struct {
	V            int      `json:"v"`
	Unrestricted bool     `json:"u,omitempty"`
	Orgs         []string `json:"o,omitempty"`
	Teacher      string   `json:"t,omitempty"`
	Students     []string `json:"s,omitempty"`
	Self         string   `json:"f,omitempty"`
	Eligible     []string `json:"e,omitempty"`
	Caseload     []string `json:"c,omitempty"`
	CaseloadOrgs []string `json:"co,omitempty"`
	Kinds        []string `json:"k,omitempty"`
	Deny         bool     `json:"d,omitempty"`
	Root         bool     `json:"r,omitempty"`
	Today        string   `json:"y"`
}

const scopeWireVersion = 2 // 2: caseloads

// MarshalBinary encodes the scope for a cache, without its principal.
func (s *Scope) MarshalBinary() ([]byte, error) {
	w := scopeWire{V: scopeWireVersion, Unrestricted: s.Unrestricted, Orgs: s.Orgs, Teacher: s.Teacher, Students: s.Students, Self: s.Self,
		Eligible: s.Eligible, Caseload: s.Caseload, CaseloadOrgs: s.CaseloadOrgs, Kinds: slices.Sorted(maps.Keys(s.kinds)), Deny: s.deny, Root: s.root, Today: s.today}
	return json.Marshal(w)
}

// UnmarshalScope decodes a scope encoded by MarshalBinary and gives it principal p,
// which must be the principal (kind, id, orgs) it was resolved for.
func UnmarshalScope(b []byte, p *Principal) (*Scope, error) {
	var w scopeWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	if w.V != scopeWireVersion || w.Today == "" || p == nil {
		return nil, errors.New("authz: not an encoded scope of this version")
	}
	s := &Scope{P: p, Unrestricted: w.Unrestricted, Orgs: w.Orgs, Teacher: w.Teacher, Students: w.Students, Self: w.Self,
		Eligible: w.Eligible, Caseload: w.Caseload, CaseloadOrgs: w.CaseloadOrgs, kinds: make(map[string]bool, len(w.Kinds)), deny: w.Deny, root: w.Root, today: w.Today}
	for _, k := range w.Kinds {
		s.kinds[k] = true
	}
	return s, nil
}
