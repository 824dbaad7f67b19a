// Package records is registrar's domain: the OneRoster 1.2 entities described as data,
// the generic Object that carries one record, validation, and the coded Error type.
//
// Every other room works from these descriptions: the store derives tables and queries
// from them, the REST layer its JSON, the CSV layer its columns, authorization its field
// policy and the vault which fields to seal. records imports nothing but the standard
// library, and nothing from registrar.
package records

import (
	"sort"
	"strings"
)

// Kind says how a field's value is represented and stored.
type Kind uint8

// Field kinds.
const (
	KString   Kind = iota // free text
	KEnum                 // one value of Enum, or "ext:..." when OpenEnum
	KBool                 // "true" or "false" (OneRoster carries booleans as strings)
	KDate                 // YYYY-MM-DD
	KDateTime             // RFC 3339 date-time, stored in UTC
	KFloat                // a number
	KRef                  // a reference to one object of Target (a GUIDRef in JSON)
	KRefs                 // references to objects of Target, kept in order in table Link
	KChildren             // references derived from Target rows whose Link column names this row
	KStrings              // a list of strings
	KJSON                 // a structured value kept as JSON
	KRoles                // a user's roles: list of Role, also kept in the user_roles table
)

// Field describes one field of an entity.
type Field struct {
	Name       string // OneRoster name, as in JSON
	Column     string // column in the entity's table ("" for KChildren)
	Kind       Kind
	Required   bool
	Sensitive  bool     // sealed under the data subject's key; never stored in plaintext
	BlindIndex bool     // a keyed blind index column (Column+"_bidx") allows equality filters
	Enum       []string // allowed values for KEnum
	OpenEnum   bool     // "ext:" extension values allowed
	Target     string   // entity name referenced by KRef, KRefs and KChildren
	Link       string   // KRefs: link table; KChildren: Target's parent column
	ReadOnly   bool     // derived by the server; ignored on input
}

// Entity describes one OneRoster object type.
type Entity struct {
	Name       string // "user"
	Table      string // "users"
	Collection string // JSON envelope key of a list: "users"
	Single     string // JSON envelope key of one object: "user"
	Service    string // "rostering" or "gradebook": the href base
	Path       string // canonical path segment of hrefs: "users"
	Subject    string // field naming the person whose key seals Sensitive fields
	Fields     []Field

	byName map[string]int
}

// Field returns the field called name.
func (e *Entity) Field(name string) (*Field, bool) {
	i, ok := e.byName[name]
	if !ok {
		return nil, false
	}
	return &e.Fields[i], true
}

// HasSensitive reports whether any field is sealed.
func (e *Entity) HasSensitive() bool {
	for i := range e.Fields {
		if e.Fields[i].Sensitive {
			return true
		}
	}
	return false
}

// Role is one entry of a user's roles.
type Role struct {
	RoleType    string `json:"roleType"`
	Role        string `json:"role"`
	Org         string `json:"org"` // sourcedId of the org
	UserProfile string `json:"userProfile,omitempty"`
	BeginDate   string `json:"beginDate,omitempty"`
	EndDate     string `json:"endDate,omitempty"`
}

// Object is one record: field name to value. Values by kind: string for KString,
// KEnum, KBool, KDate, KDateTime and KRef; float64 for KFloat; []string for KRefs,
// KChildren and KStrings; json.RawMessage for KJSON; []Role for KRoles. A field
// that is absent has no key.
type Object map[string]any

// ID returns the object's sourcedId.
func (o Object) ID() string { s, _ := o["sourcedId"].(string); return s }

// Str returns a string-valued field, or "".
func (o Object) Str(name string) string { s, _ := o[name].(string); return s }

// Statuses of a OneRoster object.
const (
	StatusActive      = "active"
	StatusToBeDeleted = "tobedeleted"
)

var common = []Field{
	{Name: "sourcedId", Column: "sourced_id", Kind: KString, Required: true},
	{Name: "status", Column: "status", Kind: KEnum, Required: true, Enum: []string{StatusActive, StatusToBeDeleted}},
	{Name: "dateLastModified", Column: "date_last_modified", Kind: KDateTime, Required: true, ReadOnly: true},
	{Name: "metadata", Column: "metadata", Kind: KJSON},
}

func entity(e Entity, fields ...Field) *Entity {
	e.Fields = append(append([]Field{}, common...), fields...)
	e.byName = make(map[string]int, len(e.Fields))
	for i, f := range e.Fields {
		e.byName[f.Name] = i
	}
	return &e
}

func str(name, col string, req bool) Field {
	return Field{Name: name, Column: col, Kind: KString, Required: req}
}
func ref(name, col, target string, req bool) Field {
	return Field{Name: name, Column: col, Kind: KRef, Target: target, Required: req}
}
func boolean(name, col string) Field { return Field{Name: name, Column: col, Kind: KBool} }
func sensitive(f Field) Field        { f.Sensitive = true; return f }

// Enumerations from the OneRoster 1.2 information model.
var (
	SessionTypes    = []string{"gradingPeriod", "semester", "schoolYear", "term"}
	ClassTypes      = []string{"homeroom", "scheduled"}
	Sexes           = []string{"male", "female", "unspecified", "other"}
	EnrollmentRoles = []string{"administrator", "proctor", "student", "teacher"}
	OrgTypes        = []string{"department", "district", "local", "national", "school", "state"}
	RoleNames       = []string{"aide", "counselor", "districtAdministrator", "guardian", "parent", "principal", "proctor", "relative", "siteAdministrator", "student", "systemAdministrator", "teacher"}
	RoleTypes       = []string{"primary", "secondary"}
	ScoreStatuses   = []string{"exempt", "fully graded", "not submitted", "partially graded", "submitted"}
)

// The OneRoster 1.2 entities.
var (
	AcademicSession = entity(Entity{Name: "academicSession", Table: "academic_sessions", Collection: "academicSessions", Single: "academicSession", Service: "rostering", Path: "academicSessions"},
		str("title", "title", true),
		Field{Name: "startDate", Column: "start_date", Kind: KDate, Required: true},
		Field{Name: "endDate", Column: "end_date", Kind: KDate, Required: true},
		Field{Name: "type", Column: "type", Kind: KEnum, Enum: SessionTypes, OpenEnum: true, Required: true},
		ref("parent", "parent_id", "academicSession", false),
		Field{Name: "children", Kind: KChildren, Target: "academicSession", Link: "parent_id", ReadOnly: true},
		str("schoolYear", "school_year", true),
	)
	Org = entity(Entity{Name: "org", Table: "orgs", Collection: "orgs", Single: "org", Service: "rostering", Path: "orgs"},
		str("name", "name", true),
		Field{Name: "type", Column: "type", Kind: KEnum, Enum: OrgTypes, OpenEnum: true, Required: true},
		str("identifier", "identifier", false),
		ref("parent", "parent_id", "org", false),
		Field{Name: "children", Kind: KChildren, Target: "org", Link: "parent_id", ReadOnly: true},
	)
	Course = entity(Entity{Name: "course", Table: "courses", Collection: "courses", Single: "course", Service: "rostering", Path: "courses"},
		str("title", "title", true),
		ref("schoolYear", "school_year_id", "academicSession", false),
		str("courseCode", "course_code", false),
		Field{Name: "grades", Column: "grades", Kind: KStrings},
		Field{Name: "subjects", Column: "subjects", Kind: KStrings},
		ref("org", "org_id", "org", true),
		Field{Name: "subjectCodes", Column: "subject_codes", Kind: KStrings},
		Field{Name: "resources", Column: "resources", Kind: KRefs, Target: "resource", Link: "course_resources"},
	)
	Class = entity(Entity{Name: "class", Table: "classes", Collection: "classes", Single: "class", Service: "rostering", Path: "classes"},
		str("title", "title", true),
		str("classCode", "class_code", false),
		Field{Name: "classType", Column: "class_type", Kind: KEnum, Enum: ClassTypes, OpenEnum: true},
		str("location", "location", false),
		Field{Name: "grades", Column: "grades", Kind: KStrings},
		Field{Name: "subjects", Column: "subjects", Kind: KStrings},
		ref("course", "course_id", "course", true),
		ref("school", "school_id", "org", true),
		Field{Name: "terms", Column: "terms", Kind: KRefs, Target: "academicSession", Link: "class_terms", Required: true},
		Field{Name: "subjectCodes", Column: "subject_codes", Kind: KStrings},
		Field{Name: "periods", Column: "periods", Kind: KStrings},
		Field{Name: "resources", Column: "resources", Kind: KRefs, Target: "resource", Link: "class_resources"},
	)
	User = entity(Entity{Name: "user", Table: "users", Collection: "users", Single: "user", Service: "rostering", Path: "users", Subject: "sourcedId"},
		str("userMasterIdentifier", "user_master_identifier", false),
		str("username", "username", false),
		sensitive(Field{Name: "userIds", Column: "user_ids", Kind: KJSON}),
		Field{Name: "enabledUser", Column: "enabled_user", Kind: KBool, Required: true},
		str("givenName", "given_name", true),
		str("familyName", "family_name", true),
		str("middleName", "middle_name", false),
		str("preferredFirstName", "preferred_first_name", false),
		str("preferredMiddleName", "preferred_middle_name", false),
		str("preferredLastName", "preferred_last_name", false),
		str("pronouns", "pronouns", false),
		Field{Name: "roles", Column: "roles", Kind: KRoles, Required: true},
		Field{Name: "userProfiles", Column: "user_profiles", Kind: KJSON},
		ref("primaryOrg", "primary_org_id", "org", false),
		sensitive(Field{Name: "identifier", Column: "identifier", Kind: KString, BlindIndex: true}),
		sensitive(Field{Name: "email", Column: "email", Kind: KString, BlindIndex: true}),
		sensitive(str("sms", "sms", false)),
		sensitive(str("phone", "phone", false)),
		Field{Name: "agents", Column: "agents", Kind: KRefs, Target: "user", Link: "user_agents"},
		Field{Name: "grades", Column: "grades", Kind: KStrings},
		Field{Name: "resources", Column: "resources", Kind: KRefs, Target: "resource", Link: "user_resources"},
	)
	Enrollment = entity(Entity{Name: "enrollment", Table: "enrollments", Collection: "enrollments", Single: "enrollment", Service: "rostering", Path: "enrollments"},
		ref("user", "user_id", "user", true),
		ref("class", "class_id", "class", true),
		ref("school", "school_id", "org", true),
		Field{Name: "role", Column: "role", Kind: KEnum, Enum: EnrollmentRoles, OpenEnum: true, Required: true},
		boolean("primary", "is_primary"),
		Field{Name: "beginDate", Column: "begin_date", Kind: KDate},
		Field{Name: "endDate", Column: "end_date", Kind: KDate},
	)
	Demographics = entity(Entity{Name: "demographics", Table: "demographics", Collection: "demographics", Single: "demographics", Service: "rostering", Path: "demographics", Subject: "sourcedId"},
		sensitive(Field{Name: "birthDate", Column: "birth_date", Kind: KDate}),
		sensitive(Field{Name: "sex", Column: "sex", Kind: KEnum, Enum: Sexes, OpenEnum: true}),
		sensitive(boolean("americanIndianOrAlaskaNative", "american_indian")),
		sensitive(boolean("asian", "asian")),
		sensitive(boolean("blackOrAfricanAmerican", "black")),
		sensitive(boolean("nativeHawaiianOrOtherPacificIslander", "pacific_islander")),
		sensitive(boolean("white", "white")),
		sensitive(boolean("demographicRaceTwoOrMoreRaces", "two_or_more_races")),
		sensitive(boolean("hispanicOrLatinoEthnicity", "hispanic")),
		sensitive(str("countryOfBirthCode", "country_of_birth", false)),
		sensitive(str("stateOfBirthAbbreviation", "state_of_birth", false)),
		sensitive(str("cityOfBirth", "city_of_birth", false)),
		sensitive(str("publicSchoolResidenceStatus", "residence_status", false)),
	)
	Resource = entity(Entity{Name: "resource", Table: "resources", Collection: "resources", Single: "resource", Service: "resources", Path: "resources"},
		str("title", "title", false),
		Field{Name: "roles", Column: "roles_json", Kind: KJSON},
		str("importance", "importance", false),
		str("vendorResourceId", "vendor_resource_id", true),
		str("vendorId", "vendor_id", false),
		str("applicationId", "application_id", false),
	)

	Category = entity(Entity{Name: "category", Table: "categories", Collection: "categories", Single: "category", Service: "gradebook", Path: "categories"},
		str("title", "title", true),
		Field{Name: "weight", Column: "weight", Kind: KFloat},
	)
	ScoreScale = entity(Entity{Name: "scoreScale", Table: "score_scales", Collection: "scoreScales", Single: "scoreScale", Service: "gradebook", Path: "scoreScales"},
		str("title", "title", true),
		str("type", "type", true),
		ref("course", "course_id", "course", false),
		ref("class", "class_id", "class", true),
		Field{Name: "scoreScaleValue", Column: "score_scale_value", Kind: KJSON, Required: true},
	)
	LineItem = entity(Entity{Name: "lineItem", Table: "line_items", Collection: "lineItems", Single: "lineItem", Service: "gradebook", Path: "lineItems"},
		str("title", "title", true),
		str("description", "description", false),
		Field{Name: "assignDate", Column: "assign_date", Kind: KDateTime, Required: true},
		Field{Name: "dueDate", Column: "due_date", Kind: KDateTime, Required: true},
		ref("class", "class_id", "class", true),
		ref("school", "school_id", "org", true),
		ref("category", "category_id", "category", true),
		ref("gradingPeriod", "grading_period_id", "academicSession", false),
		ref("academicSession", "academic_session_id", "academicSession", false),
		ref("scoreScale", "score_scale_id", "scoreScale", false),
		Field{Name: "resultValueMin", Column: "result_value_min", Kind: KFloat},
		Field{Name: "resultValueMax", Column: "result_value_max", Kind: KFloat},
		Field{Name: "learningObjectiveSet", Column: "learning_objective_set", Kind: KJSON},
	)
	Result = entity(Entity{Name: "result", Table: "results", Collection: "results", Single: "result", Service: "gradebook", Path: "results", Subject: "student"},
		ref("lineItem", "line_item_id", "lineItem", true),
		ref("student", "student_id", "user", true),
		ref("class", "class_id", "class", false),
		ref("scoreScale", "score_scale_id", "scoreScale", false),
		sensitive(Field{Name: "scoreStatus", Column: "score_status", Kind: KEnum, Enum: ScoreStatuses, OpenEnum: true, Required: true}),
		sensitive(Field{Name: "score", Column: "score", Kind: KFloat}),
		sensitive(str("textScore", "text_score", false)),
		Field{Name: "scoreDate", Column: "score_date", Kind: KDate, Required: true},
		sensitive(str("comment", "comment", false)),
		sensitive(Field{Name: "learningObjectiveSet", Column: "learning_objective_set", Kind: KJSON}),
		boolean("inProgress", "in_progress"),
		boolean("incomplete", "incomplete"),
		boolean("late", "late"),
		boolean("missing", "missing"),
	)
	AssessmentLineItem = entity(Entity{Name: "assessmentLineItem", Table: "assessment_line_items", Collection: "assessmentLineItems", Single: "assessmentLineItem", Service: "gradebook", Path: "assessmentLineItems"},
		str("title", "title", true),
		str("description", "description", false),
		ref("class", "class_id", "class", false),
		ref("parentAssessmentLineItem", "parent_id", "assessmentLineItem", false),
		ref("scoreScale", "score_scale_id", "scoreScale", false),
		Field{Name: "resultValueMin", Column: "result_value_min", Kind: KFloat},
		Field{Name: "resultValueMax", Column: "result_value_max", Kind: KFloat},
		Field{Name: "learningObjectiveSet", Column: "learning_objective_set", Kind: KJSON},
	)
	AssessmentResult = entity(Entity{Name: "assessmentResult", Table: "assessment_results", Collection: "assessmentResults", Single: "assessmentResult", Service: "gradebook", Path: "assessmentResults", Subject: "student"},
		ref("assessmentLineItem", "assessment_line_item_id", "assessmentLineItem", true),
		ref("student", "student_id", "user", true),
		sensitive(Field{Name: "score", Column: "score", Kind: KFloat}),
		sensitive(str("textScore", "text_score", false)),
		Field{Name: "scoreDate", Column: "score_date", Kind: KDate, Required: true},
		ref("scoreScale", "score_scale_id", "scoreScale", false),
		sensitive(Field{Name: "scorePercentile", Column: "score_percentile", Kind: KFloat}),
		sensitive(Field{Name: "scoreStatus", Column: "score_status", Kind: KEnum, Enum: ScoreStatuses, OpenEnum: true, Required: true}),
		sensitive(str("comment", "comment", false)),
		sensitive(Field{Name: "learningObjectiveSet", Column: "learning_objective_set", Kind: KJSON}),
		boolean("inProgress", "in_progress"),
		boolean("incomplete", "incomplete"),
		boolean("late", "late"),
		boolean("missing", "missing"),
	)
)

// Entities lists every entity in dependency order: an entity comes after those its
// required references point to, so loading in this order never meets a dangling one.
var Entities = []*Entity{Org, AcademicSession, Resource, Course, Class, User, Demographics, Enrollment, Category, ScoreScale, LineItem, Result, AssessmentLineItem, AssessmentResult}

var byName = func() map[string]*Entity {
	m := make(map[string]*Entity, len(Entities))
	for _, e := range Entities {
		m[e.Name] = e
	}
	return m
}()

// EntityNamed returns the entity called name ("user", "lineItem", ...).
func EntityNamed(name string) (*Entity, bool) { e, ok := byName[name]; return e, ok }

// FieldNames returns the names of e's fields, sorted, for error messages.
func (e *Entity) FieldNames() []string {
	names := make([]string, 0, len(e.Fields))
	for _, f := range e.Fields {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	return names
}

// Predicate is a condition in the store's query language: a boolean SQL expression
// over the entity's table, aliased t, with ? placeholders and their arguments. Only
// authz and the store's route relations build them, never from client text.
type Predicate struct {
	SQL  string
	Args []any
}

// And joins predicates; an empty list is true.
func And(ps ...Predicate) Predicate {
	// Sized first, then written once: this runs for every read.
	size, nargs := 0, 0
	for _, p := range ps {
		if p.SQL != "" {
			size += len(p.SQL) + len("() AND ")
			nargs += len(p.Args)
		}
	}
	if size == 0 {
		return Predicate{}
	}
	var b strings.Builder
	b.Grow(size)
	var args []any
	if nargs > 0 {
		args = make([]any, 0, nargs)
	}
	for _, p := range ps {
		if p.SQL == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("(")
		b.WriteString(p.SQL)
		b.WriteString(")")
		args = append(args, p.Args...)
	}
	return Predicate{SQL: b.String(), Args: args}
}
