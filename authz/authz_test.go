package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"registrar/records"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t.Add(12 * time.Hour)
}

func TestEligible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		birth  string
		grades []string
		today  string
		want   bool
	}{
		{"a student the day before the 18th birthday is not eligible", "2008-09-15", []string{"12"}, "2026-09-14", false},
		{"a student on the 18th birthday is eligible", "2008-09-15", []string{"12"}, "2026-09-15", true},
		{"a student a day past the 18th birthday is eligible", "2008-09-15", nil, "2026-09-16", true},
		{"a student born on Dec 31 is not eligible on Dec 30 of the 18th year", "2008-12-31", nil, "2026-12-30", false},
		{"a student born on Jan 1 is eligible on Jan 1 of the 18th year", "2008-01-01", nil, "2026-01-01", true},
		{"a Feb 29 birth is not eligible on Feb 28 of a common year", "2008-02-29", nil, "2026-02-28", false},
		{"a Feb 29 birth is eligible on Mar 1 of a common year", "2008-02-29", nil, "2026-03-01", true},
		{"a Feb 29 birth in 2012 is 17 on 2030-02-28", "2012-02-29", nil, "2030-02-28", false},
		{"a Feb 29 birth in 2012 turns 18 on 2030-03-01", "2012-02-29", nil, "2030-03-01", true},
		{"a Feb 29 birth is eligible on Feb 29 of a later leap year", "2008-02-29", nil, "2028-02-29", true},
		{"a Feb 29 birth is not eligible on Feb 29 of a leap year at 16", "2012-02-29", nil, "2028-02-29", false},
		{"a fourteen-year-old is not eligible", "2012-03-01", []string{"08"}, "2026-09-15", false},
		{"a minor in postsecondary is eligible", "2012-03-01", []string{"PS"}, "2026-09-15", true},
		{"a minor in grade 13 is eligible", "2012-03-01", []string{"13"}, "2026-09-15", true},
		{"an unknown birth date is not eligible", "", []string{"12"}, "2026-09-15", false},
		{"a malformed birth date is not eligible", "15/09/2008", nil, "2026-09-15", false},
		{"a birth date in the future is not eligible", "2030-01-01", nil, "2026-09-15", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Eligible(tc.birth, tc.grades, day(tc.today)); got != tc.want {
				t.Errorf("Eligible(%q, %v, %s) = %v, want %v", tc.birth, tc.grades, tc.today, got, tc.want)
			}
		})
	}
}

func TestEligibleUsesTheDateOfItsTimeZone(t *testing.T) {
	t.Parallel()
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	// 23:30 on the eve in Los Angeles is 06:30 on the birthday in UTC.
	instant := time.Date(2026, 9, 14, 23, 30, 0, 0, la)
	if Eligible("2008-09-15", nil, instant) {
		t.Errorf("in Los Angeles at %s: got eligible, want not yet", instant)
	}
	if !Eligible("2008-09-15", nil, instant.UTC()) {
		t.Errorf("in UTC at %s: got not eligible, want eligible", instant.UTC())
	}
}

// fakeDirectory is a hand-written Directory over maps.
type fakeDirectory struct {
	roles    map[string][]records.Role
	disabled map[string]bool
	agents   map[string][]string
	birth    map[string]string
	grades   map[string][]string
	parent   map[string]string // org -> parent org
	caseload map[string][]string
	depends  map[string][]string // guardian -> dependent students
	err      error
}

func (d *fakeDirectory) Caseload(_ context.Context, id string) ([]string, error) {
	return d.caseload[id], d.err
}

func (d *fakeDirectory) Dependents(_ context.Context, id string) ([]string, error) {
	return d.depends[id], d.err
}

func (d *fakeDirectory) UserRoles(_ context.Context, id string) ([]records.Role, bool, error) {
	r, ok := d.roles[id]
	return r, ok && !d.disabled[id], d.err
}

func (d *fakeDirectory) Agents(_ context.Context, id string) ([]string, error) {
	return d.agents[id], d.err
}

func (d *fakeDirectory) Birth(_ context.Context, id string) (string, []string, error) {
	return d.birth[id], d.grades[id], d.err
}

func (d *fakeDirectory) ExpandOrgs(_ context.Context, orgs []string) ([]string, bool, error) {
	if slices.Contains(orgs, AllOrgs) {
		return nil, true, d.err
	}
	var out []string
	root := false
	for _, o := range orgs {
		if d.parent[o] == "" {
			root = true
		}
		out = append(out, o)
		for c, p := range d.parent {
			if p == o {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out, root, d.err
}

func role(r, org string) records.Role { return records.Role{RoleType: "primary", Role: r, Org: org} }

func newFakeDirectory() *fakeDirectory {
	return &fakeDirectory{
		roles: map[string][]records.Role{
			"admin":     {role("districtAdministrator", "d")},
			"principal": {role("principal", "sa")},
			"counselor": {role("counselor", "sa")},
			"teacher":   {role("teacher", "sa")},
			"aide":      {role("aide", "sa")},
			"parent":    {role("parent", "sa")},
			"relative":  {role("relative", "sa")},
			"minor":     {role("student", "sa")},
			"adult":     {role("student", "sa")},
			"college":   {role("student", "sa")},
			"nobody":    {role("ext:librarian", "sa")},
			"former":    {{RoleType: "primary", Role: "teacher", Org: "sa", BeginDate: "2020-08-01", EndDate: "2026-06-30"}},
			"future":    {{RoleType: "primary", Role: "principal", Org: "sa", BeginDate: "2027-01-01"}},
			"disabled":  {role("teacher", "sa")},
			"both":      {role("teacher", "sa"), role("parent", "sa")},
			"casecoun":  {role("counselor", "sa")},
			"casepri":   {role("counselor", "sa"), role("principal", "sb")},
			"depparent": {role("guardian", "sa")},
		},
		disabled: map[string]bool{"disabled": true},
		agents:   map[string][]string{"parent": {"minor", "adult", "college", "teacher"}, "relative": {"minor"}, "both": {"minor"}, "depparent": {"minor", "adult", "college"}},
		caseload: map[string][]string{"casecoun": {"minor", "adult"}, "casepri": {"minor"}},
		// adult is a dependent of depparent; minor is flagged too (a flag recorded
		// before the 18th birthday); "teacher" is not a child of depparent at all.
		depends: map[string][]string{"depparent": {"adult", "minor", "teacher"}, "parent": nil},
		birth:   map[string]string{"minor": "2012-03-01", "adult": "2008-09-15", "college": "2010-01-01"},
		grades:  map[string][]string{"college": {"PS"}},
		parent:  map[string]string{"sa": "d", "sb": "d", "sc": "d2"},
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	today := day("2026-09-15")
	user := func(id string) *Principal { return &Principal{Kind: "user", ID: id} }
	client := func(orgs ...string) *Principal {
		return &Principal{Kind: "client", ID: "c", Orgs: orgs, Scopes: []string{RosterReadonly, AdminScope}}
	}
	tests := []struct {
		name         string
		p            *Principal
		denied       bool
		unrestricted bool
		admin        bool
		orgs         []string
		students     []string
		eligible     []string
		teacher      string
		caseload     []string
		caseloadOrgs []string
	}{
		{name: "a district administrator covers the district's orgs and is not unrestricted", p: user("admin"), orgs: []string{"d", "sa", "sb"}, admin: true},
		{name: "a principal covers the school", p: user("principal"), orgs: []string{"sa"}},
		{name: "a counselor without a caseload covers the school", p: user("counselor"), orgs: []string{"sa"}},
		{name: "a counselor with a caseload covers the caseload within the school, not the school", p: user("casecoun"), caseload: []string{"minor", "adult"}, caseloadOrgs: []string{"sa"}},
		{name: "a counselor with a caseload who is a principal elsewhere covers that school and the caseload", p: user("casepri"), orgs: []string{"sb"}, caseload: []string{"minor"}, caseloadOrgs: []string{"sa"}},
		{name: "a guardian keeps an eligible student recorded as a dependent, and only children", p: user("depparent"), students: []string{"minor", "adult"}, eligible: []string{"college"}},
		{name: "a teacher is a teacher", p: user("teacher"), teacher: "teacher"},
		{name: "an aide is a teacher", p: user("aide"), teacher: "aide"},
		{name: "a parent holds the minor children only, and not agents who are not students", p: user("parent"), students: []string{"minor"}, eligible: []string{"adult", "college"}},
		{name: "a relative is a guardian", p: user("relative"), students: []string{"minor"}},
		{name: "a teacher who is a parent holds both", p: user("both"), teacher: "both", students: []string{"minor"}},
		{name: "a student holds themself", p: user("minor"), students: []string{"minor"}},
		{name: "a disabled user is denied", p: user("disabled"), denied: true},
		{name: "an unknown user is denied", p: user("ghost"), denied: true},
		{name: "a user whose only role is unknown is denied", p: user("nobody"), denied: true},
		{name: "a user whose role has ended is denied", p: user("former"), denied: true},
		{name: "a user whose role has not begun is denied", p: user("future"), denied: true},
		{name: "an installation-wide client is unrestricted", p: client(AllOrgs), unrestricted: true, admin: true},
		{name: "a district client covers the district and is not unrestricted", p: client("d"), orgs: []string{"d", "sa", "sb"}, admin: true},
		{name: "a school client covers the school and is no administrator", p: client("sa"), orgs: []string{"sa"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Resolve(context.Background(), newFakeDirectory(), tc.p, today)
			if err != nil {
				t.Fatal(err)
			}
			if s.Denied() != tc.denied {
				t.Errorf("Denied() = %v, want %v", s.Denied(), tc.denied)
			}
			if s.Unrestricted != tc.unrestricted {
				t.Errorf("Unrestricted = %v, want %v", s.Unrestricted, tc.unrestricted)
			}
			if s.Admin() != tc.admin {
				t.Errorf("Admin() = %v, want %v", s.Admin(), tc.admin)
			}
			if !slices.Equal(s.Orgs, tc.orgs) {
				t.Errorf("Orgs = %v, want %v", s.Orgs, tc.orgs)
			}
			if !slices.Equal(s.Students, tc.students) {
				t.Errorf("Students = %v, want %v", s.Students, tc.students)
			}
			if !slices.Equal(s.Eligible, tc.eligible) {
				t.Errorf("Eligible = %v, want %v", s.Eligible, tc.eligible)
			}
			if !slices.Equal(s.Caseload, tc.caseload) || !slices.Equal(s.CaseloadOrgs, tc.caseloadOrgs) {
				t.Errorf("Caseload = %v over %v, want %v over %v", s.Caseload, s.CaseloadOrgs, tc.caseload, tc.caseloadOrgs)
			}
			if s.Teacher != tc.teacher {
				t.Errorf("Teacher = %q, want %q", s.Teacher, tc.teacher)
			}
			if tc.denied {
				for _, e := range records.Entities {
					if s.CanRead(e) || s.Rows(e).SQL != Deny.SQL {
						t.Errorf("%s: a denied scope reads it (CanRead %v, Rows %q)", e.Name, s.CanRead(e), s.Rows(e).SQL)
					}
				}
			}
		})
	}
}

func TestResolvePassesDirectoryErrorsOn(t *testing.T) {
	t.Parallel()
	d := newFakeDirectory()
	d.err = errors.New("database down")
	for _, p := range []*Principal{{Kind: "user", ID: "parent"}, {Kind: "client", Orgs: []string{"d"}}} {
		if _, err := Resolve(context.Background(), d, p, day("2026-09-15")); err == nil {
			t.Errorf("%s %s: got no error, want the directory's", p.Kind, p.ID)
		}
	}
}

// Every cell of the policy expands to SQL whose placeholders match its arguments,
// for every class of principal, so no argument shifts into another's place.
func TestRowsPlaceholdersMatchArguments(t *testing.T) {
	t.Parallel()
	today := day("2026-09-15")
	for _, id := range []string{"admin", "principal", "teacher", "parent", "minor", "both", "adult", "casecoun", "casepri", "depparent"} {
		s, err := Resolve(context.Background(), newFakeDirectory(), &Principal{Kind: "user", ID: id}, today)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range records.Entities {
			p := s.Rows(e)
			if n := strings.Count(p.SQL, "?"); n != len(p.Args) {
				t.Errorf("%s on %s: %d placeholders, %d arguments: %s", id, e.Name, n, len(p.Args), p.SQL)
			}
			if strings.ContainsAny(p.SQL, "{}") {
				t.Errorf("%s on %s: unexpanded placeholder in %s", id, e.Name, p.SQL)
			}
		}
	}
}

func TestPolicyCoversEveryEntity(t *testing.T) {
	t.Parallel()
	for _, e := range records.Entities {
		if _, ok := policy[e.Name]; !ok {
			t.Errorf("entity %s has no row in the policy: nobody but an unrestricted client could read it", e.Name)
		}
	}
	for name := range policy {
		if _, ok := records.EntityNamed(name); !ok {
			t.Errorf("policy names entity %q, which does not exist", name)
		}
	}
}

// A field the policy hides must be Sensitive: the store never decrypts a hidden
// sensitive field, so it cannot reach a response even by mistake.
func TestHiddenFieldsAreSealedFieldsThatExist(t *testing.T) {
	t.Parallel()
	for entity, fields := range readers {
		e, ok := records.EntityNamed(entity)
		if !ok {
			t.Errorf("readers names entity %q, which does not exist", entity)
			continue
		}
		for name := range fields {
			f, ok := e.Field(name)
			if !ok {
				t.Errorf("readers names %s.%s, which does not exist", entity, name)
				continue
			}
			if !f.Sensitive {
				t.Errorf("%s.%s is hidden from some readers but not Sensitive: the store would return it", entity, name)
			}
		}
	}
}

func TestHidden(t *testing.T) {
	t.Parallel()
	today := day("2026-09-15")
	tests := []struct {
		who    *Principal
		field  string
		hidden bool
	}{
		{&Principal{Kind: "user", ID: "principal"}, "userIds", false},
		{&Principal{Kind: "user", ID: "admin"}, "userIds", false},
		{&Principal{Kind: "user", ID: "teacher"}, "userIds", true},
		{&Principal{Kind: "user", ID: "teacher"}, "identifier", false},
		{&Principal{Kind: "user", ID: "parent"}, "identifier", true},
		{&Principal{Kind: "user", ID: "parent"}, "phone", true},
		{&Principal{Kind: "user", ID: "parent"}, "email", false},
		{&Principal{Kind: "user", ID: "minor"}, "sms", true},
		{&Principal{Kind: "user", ID: "minor"}, "givenName", false},
		{&Principal{Kind: "user", ID: "both"}, "identifier", false}, // the teacher in them may
		{&Principal{Kind: "client", Orgs: []string{"sa"}}, "userIds", false},
		{&Principal{Kind: "user", ID: "disabled"}, "givenName", true},
		{&Principal{Kind: "user", ID: "casecoun"}, "userIds", false}, // a school official, whose students are narrowed
		{&Principal{Kind: "user", ID: "depparent"}, "identifier", true},
	}
	for _, tc := range tests {
		name := tc.who.Kind + " " + tc.who.ID + " reading user." + tc.field
		t.Run(name, func(t *testing.T) {
			s, err := Resolve(context.Background(), newFakeDirectory(), tc.who, today)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := records.User.Field(tc.field)
			if got := s.Hidden(records.User, f); got != tc.hidden {
				t.Errorf("Hidden = %v, want %v", got, tc.hidden)
			}
		})
	}
}

func TestCanReadAndWrite(t *testing.T) {
	t.Parallel()
	today := day("2026-09-15")
	scope := func(p *Principal) *Scope {
		s, err := Resolve(context.Background(), newFakeDirectory(), p, today)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cl := func(scopes ...string) *Scope {
		return scope(&Principal{Kind: "client", Orgs: []string{"sa"}, Scopes: scopes})
	}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"a roster client reads users", cl(RosterReadonly).CanRead(records.User), true},
		{"a roster-core client reads users", cl(RosterCoreReadonly).CanRead(records.User), true},
		{"a roster client does not read demographics", cl(RosterReadonly).CanRead(records.Demographics), false},
		{"a demographics client reads demographics", cl(RosterDemographics).CanRead(records.Demographics), true},
		{"a demographics client does not read users", cl(RosterDemographics).CanRead(records.User), false},
		{"a gradebook client reads results", cl(GradebookReadonly).CanRead(records.Result), true},
		{"a gradebook client does not read assessment results", cl(GradebookReadonly).CanRead(records.AssessmentResult), false},
		{"an assessment client reads assessment results", cl(AssessmentReadonly).CanRead(records.AssessmentResult), true},
		{"a read-only client does not write results", cl(GradebookReadonly).CanWrite(records.Result, WritePut), false},
		{"a createput client puts results", cl(GradebookCreatePut).CanWrite(records.Result, WritePut), true},
		{"a createput client does not delete", cl(GradebookCreatePut).CanWrite(records.Result, WriteDelete), false},
		{"a createpost client does not post assessment results", cl(GradebookCreatePost).CanWrite(records.AssessmentResult, WritePost), false},
		{"a teacher does not read demographics", scope(&Principal{Kind: "user", ID: "teacher"}).CanRead(records.Demographics), false},
		{"a teacher writes results", scope(&Principal{Kind: "user", ID: "teacher"}).CanWrite(records.Result, WritePut), true},
		{"a teacher does not write categories", scope(&Principal{Kind: "user", ID: "teacher"}).CanWrite(records.Category, WritePut), false},
		{"a parent reads the child's demographics", scope(&Principal{Kind: "user", ID: "parent"}).CanRead(records.Demographics), true},
		{"a parent writes no result", scope(&Principal{Kind: "user", ID: "parent"}).CanWrite(records.Result, WritePut), false},
		{"a student writes no result", scope(&Principal{Kind: "user", ID: "minor"}).CanWrite(records.Result, WritePut), false},
		{"a district administrator writes categories", scope(&Principal{Kind: "user", ID: "admin"}).CanWrite(records.Category, WritePut), true},
		{"a district administrator reads demographics", scope(&Principal{Kind: "user", ID: "admin"}).CanRead(records.Demographics), true},
		{"a principal is no administrator", scope(&Principal{Kind: "user", ID: "principal"}).Admin(), false},
		{"a counselor with a caseload reads demographics", scope(&Principal{Kind: "user", ID: "casecoun"}).CanRead(records.Demographics), true},
		{"a counselor with a caseload writes results", scope(&Principal{Kind: "user", ID: "casecoun"}).CanWrite(records.Result, WritePut), true},
		{"a counselor with a caseload is no administrator", scope(&Principal{Kind: "user", ID: "casecoun"}).Admin(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestExpandScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"roster.readonly", RosterReadonly, true},
		{RosterDemographics, RosterDemographics, true},
		{"admin", AdminScope, true},
		{"roster.write", ScopePrefix + "roster.write", false},
		{"https://evil.example/scope/roster.readonly", "https://evil.example/scope/roster.readonly", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ExpandScope(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ExpandScope(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// A scope through the cache's codec answers as the scope it was: the caseload and the
// dependency-flagged children included (a lost field would widen or narrow a cached
// counselor's or parent's rows).
func TestScopeCodecKeepsCaseloadsAndDependents(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"casecoun", "casepri", "depparent", "parent", "admin"} {
		p := &Principal{Kind: "user", ID: id}
		s, err := Resolve(context.Background(), newFakeDirectory(), p, day("2026-09-15"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalScope(b, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range records.Entities {
			want, have := s.Rows(e), got.Rows(e)
			if want.SQL != have.SQL || fmt.Sprint(want.Args) != fmt.Sprint(have.Args) {
				t.Errorf("%s on %s: decoded scope gives %q %v, want %q %v", id, e.Name, have.SQL, have.Args, want.SQL, want.Args)
			}
		}
	}
}
