// Package authz decides what each principal may see and do, in one place, as data.
//
// A principal (an API client or a person) is resolved once per request into a Scope:
// the relationships that give it a legitimate educational interest (the classes a
// teacher teaches, the schools an administrator runs, a counselor's caseload, the
// children of a parent who are not yet eligible students or are recorded as the
// parent's dependents, the orgs a vendor serves). The Scope then yields, for
// each entity, a SQL predicate that the store joins into every query, so lists,
// counts and nested paths see exactly the rows the principal may see; and, for each
// field, whether the principal may read it. The rules are the table in policy.go.
//
// authz imports records only; it reaches the database through the small Directory
// interface, implemented by the store.
package authz

import (
	"context"
	"slices"
	"strings"
	"time"

	"registrar/records"
)

// OneRoster 1.2 scope URIs.
const (
	ScopePrefix         = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
	RosterReadonly      = ScopePrefix + "roster.readonly"
	RosterCoreReadonly  = ScopePrefix + "roster-core.readonly"
	RosterDemographics  = ScopePrefix + "roster-demographics.readonly"
	GradebookReadonly   = ScopePrefix + "gradebook.readonly"
	GradebookCore       = ScopePrefix + "gradebook-core.readonly"
	GradebookCreatePut  = ScopePrefix + "gradebook.createput"
	GradebookCreatePost = ScopePrefix + "gradebook.createpost"
	GradebookDelete     = ScopePrefix + "gradebook.delete"
	AssessmentReadonly  = ScopePrefix + "assessment.readonly"
	AssessmentCreatePut = ScopePrefix + "assessment.createput"
	AssessmentDelete    = ScopePrefix + "assessment.delete"
	AdminScope          = "https://registrar.invalid/scope/admin" // registrar's own: imports, exports, audit
)

// AllScopes lists every scope a client can be granted.
var AllScopes = []string{RosterReadonly, RosterCoreReadonly, RosterDemographics, GradebookReadonly, GradebookCore,
	GradebookCreatePut, GradebookCreatePost, GradebookDelete, AssessmentReadonly, AssessmentCreatePut, AssessmentDelete, AdminScope}

// ExpandScope accepts a full scope URI or its short name ("roster.readonly").
func ExpandScope(s string) (string, bool) {
	if !strings.HasPrefix(s, "https://") {
		if s == "admin" {
			s = AdminScope
		} else {
			s = ScopePrefix + s
		}
	}
	return s, slices.Contains(AllScopes, s)
}

// Legal bases under 34 CFR 99.31(a) for API clients.
const (
	BasisSchoolOfficial = "school-official" // 99.31(a)(1): needs a contract reference for a vendor
	BasisStudiesAudit   = "audit-evaluation"
	BasisStudies        = "studies"
	BasisConsent        = "consent"
	BasisDirectory      = "directory-information"
	BasisTransfer       = "transfer"
)

// LegalBases lists the bases a client can be registered under.
var LegalBases = []string{BasisSchoolOfficial, BasisStudiesAudit, BasisStudies, BasisConsent, BasisDirectory, BasisTransfer}

// Principal is who is asking, as authenticated.
type Principal struct {
	Kind       string // "client" or "user"
	ID         string // client id, or the user's sourcedId
	ClientID   string // the client through which a user came, if any
	Name       string
	Scopes     []string
	Orgs       []string // a client's orgs
	LegalBasis string
	Purpose    string
}

// Has reports whether the principal holds scope.
func (p *Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Directory is the data authz needs to resolve a principal.
type Directory interface {
	// User returns a user's roles (and whether it exists and is enabled).
	UserRoles(ctx context.Context, id string) (roles []records.Role, enabled bool, err error)
	// Agents returns the users linked to id as agents, in either direction.
	Agents(ctx context.Context, id string) ([]string, error)
	// Birth returns a student's birth date ("" if unknown) and grades.
	Birth(ctx context.Context, id string) (birthDate string, grades []string, err error)
	// Roots returns, of orgs, those that have no parent (districts and above) and,
	// for the others, all their descendants.
	ExpandOrgs(ctx context.Context, orgs []string) (all []string, root bool, err error)
	// Caseload returns the students of a counselor's caseload (none: no caseload set).
	Caseload(ctx context.Context, counselor string) ([]string, error)
	// Dependents returns the students the district records as dependents of guardian
	// (34 CFR 99.31(a)(8)).
	Dependents(ctx context.Context, guardian string) ([]string, error)
}

// The change-log entities of the data Resolve reads beyond OneRoster: the store logs
// a change of a caseload or a dependency flag under these names, and the scope cache
// watches them (with users, demographics and orgs) to know when a scope is stale.
const (
	ChangeCaseload  = "caseload"  // sourcedId: the counselor
	ChangeDependent = "dependent" // sourcedId: the student
)

// AllOrgs, as a client's only org, registers the client for every org of the
// installation (every district and everything under them).
const AllOrgs = "*"

// Scope is a resolved principal: what it may see.
type Scope struct {
	P *Principal
	// Unrestricted sees every row of the installation: only a client registered for
	// AllOrgs. A district administrator or a client of one district is not
	// unrestricted: it sees its district (Orgs), never another district kept in the
	// same installation.
	Unrestricted bool
	Orgs         []string // the orgs the principal covers and all their descendants
	Teacher      string   // user id: sees the classes they teach
	Students     []string // explicit student ids (a parent's minor children; a student's self)
	Self         string
	// Caseload is a counselor's caseload, and CaseloadOrgs the orgs (with their
	// descendants) of the counselor roles it applies to: such a counselor sees, of
	// the students of CaseloadOrgs, only those of Caseload. A counselor without a
	// caseload is a school official of their schools (Orgs).
	Caseload     []string
	CaseloadOrgs []string
	// Eligible lists the principal's children who are eligible students: shown so that
	// the API can say why access ended.
	Eligible []string
	kinds    map[string]bool // role classes held
	deny     bool
	root     bool   // Orgs include a root org (a whole district): see Admin
	today    string // YYYY-MM-DD in the district's time zone: enrollments ended before it no longer count
}

// Role classes.
const (
	classDistrict = "district"
	classSchool   = "school"
	classTeacher  = "teacher"
	classGuardian = "guardian"
	classStudent  = "student"
	classCaseload = "caseload" // a counselor with a caseload: the school rules, narrowed to the caseload's students
)

var roleClass = map[string]string{
	"districtAdministrator": classDistrict,
	"systemAdministrator":   classDistrict,
	"siteAdministrator":     classSchool,
	"principal":             classSchool,
	"counselor":             classSchool,
	"teacher":               classTeacher,
	"aide":                  classTeacher,
	"proctor":               classTeacher,
	"parent":                classGuardian,
	"guardian":              classGuardian,
	"relative":              classGuardian,
	"student":               classStudent,
}

// Resolve turns a principal into its scope, as of today in loc.
func Resolve(ctx context.Context, dir Directory, p *Principal, today time.Time) (*Scope, error) {
	s := &Scope{P: p, kinds: map[string]bool{}, today: today.Format(time.DateOnly)}
	if p.Kind == "client" {
		all, root, err := dir.ExpandOrgs(ctx, p.Orgs)
		if err != nil {
			return nil, err
		}
		s.Unrestricted, s.Orgs, s.root = slices.Contains(p.Orgs, AllOrgs), all, root
		s.kinds[classSchool] = true
		return s, nil
	}
	roles, enabled, err := dir.UserRoles(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	if !enabled {
		s.deny = true
		return s, nil
	}
	var orgs, counselorOrgs []string
	for _, r := range roles {
		if !activeOn(r, today) {
			continue
		}
		c := roleClass[r.Role]
		if c == "" {
			continue
		}
		if r.Role == "counselor" {
			// A school official whose students may be narrowed to a caseload: decided
			// below, once every role is known.
			counselorOrgs = append(counselorOrgs, r.Org)
			continue
		}
		s.kinds[c] = true
		switch c {
		case classDistrict, classSchool:
			// A district administrator sees what a school administrator of every
			// school of the district sees: the school rules over the district's orgs.
			s.kinds[classSchool] = true
			orgs = append(orgs, r.Org)
		case classTeacher:
			s.Teacher = p.ID
		case classStudent:
			s.Self = p.ID
			s.Students = append(s.Students, p.ID)
		}
	}
	if len(counselorOrgs) > 0 {
		caseload, err := dir.Caseload(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		if len(caseload) == 0 {
			s.kinds[classSchool] = true
			orgs = append(orgs, counselorOrgs...)
		} else {
			all, _, err := dir.ExpandOrgs(ctx, counselorOrgs)
			if err != nil {
				return nil, err
			}
			s.kinds[classCaseload] = true
			s.Caseload, s.CaseloadOrgs = caseload, all
		}
	}
	if s.kinds[classGuardian] {
		kids, err := dir.Agents(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		var dependents []string
		dependentsRead := false
		for _, kid := range kids {
			kr, _, err := dir.UserRoles(ctx, kid)
			if err != nil {
				return nil, err
			}
			if !hasRole(kr, "student") {
				continue
			}
			birth, grades, err := dir.Birth(ctx, kid)
			if err != nil {
				return nil, err
			}
			if Eligible(birth, grades, today) {
				// 34 CFR 99.31(a)(8): the parent of a dependent student (IRS sense)
				// keeps access, when the district has recorded the dependency.
				if !dependentsRead {
					if dependents, err = dir.Dependents(ctx, p.ID); err != nil {
						return nil, err
					}
					dependentsRead = true
				}
				if !slices.Contains(dependents, kid) {
					s.Eligible = append(s.Eligible, kid)
					continue
				}
			}
			s.Students = append(s.Students, kid)
		}
	}
	if len(orgs) > 0 {
		all, root, err := dir.ExpandOrgs(ctx, orgs)
		if err != nil {
			return nil, err
		}
		s.Orgs = all
		s.root = root && s.kinds[classDistrict]
	}
	if len(s.kinds) == 0 {
		s.deny = true
	}
	return s, nil
}

func hasRole(roles []records.Role, role string) bool {
	for _, r := range roles {
		if r.Role == role {
			return true
		}
	}
	return false
}

func activeOn(r records.Role, today time.Time) bool {
	d := today.Format(time.DateOnly)
	if r.BeginDate != "" && d < r.BeginDate {
		return false
	}
	if r.EndDate != "" && d > r.EndDate {
		return false
	}
	return true
}

// Eligible reports whether a student is an eligible student under 34 CFR 99.3: 18 or
// older on today (a date in the district's time zone), or attending postsecondary.
// A birthday of Feb 29 is reached on Mar 1 in non-leap years.
func Eligible(birthDate string, grades []string, today time.Time) bool {
	for _, g := range grades {
		if g == "PS" || g == "13" {
			return true
		}
	}
	b, err := records.ParseDate(birthDate)
	if err != nil {
		return false
	}
	y, m, d := today.Date()
	age := y - b.Year()
	if m < b.Month() || m == b.Month() && d < b.Day() {
		age--
	}
	return age >= 18
}
