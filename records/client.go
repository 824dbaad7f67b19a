package records

import "time"

// Client is a registered API client (a system acting under OAuth2 client credentials).
// Its secret is kept only as a hash.
type Client struct {
	ID          string
	Name        string
	SecretHash  []byte
	Scopes      []string
	Orgs        []string // sourcedIds of the orgs it serves: the district, or some schools
	LegalBasis  string   // 34 CFR 99.31(a) basis, e.g. "school-official"
	ContractRef string   // the agreement that makes a vendor a school official (99.31(a)(1)(i)(B))
	Purpose     string   // what it may use the data for (99.33: carried on every response)
	CreatedAt   time.Time
	RevokedAt   *time.Time
}
