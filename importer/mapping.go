package importer

import (
	"fmt"

	"registrar/oneroster/csvspec"
	"registrar/records"
)

// conv says how a CSV value becomes a field value (and back, on export).
type conv uint8

const (
	cText        conv = iota // the text as is (strings, enums, booleans, dates, references)
	cList                    // a comma-separated list -> []string (KStrings, KRefs)
	cFloat                   // a number -> float64
	cDateTime                // a CSV Date -> a records date-time at midnight UTC
	cUserIDs                 // {type:identifier},... -> JSON [{"type","identifier"}]
	cScaleValues             // {lhs:rhs},... -> JSON [{"itemValueLHS","itemValueRHS"}]
	cJSONStrings             // a comma-separated list -> JSON array of strings
	cPassword                // must be empty: registrar stores no passwords
	cNotKept                 // validated, then not kept (no field holds it); see docs/import.md
)

// column maps one CSV column to one field of the file's entity.
type column struct {
	csv   string
	field string // "" for cPassword and cNotKept
	conv  conv
}

// entityFile is a CSV file whose rows are objects of one entity.
type entityFile struct {
	file   string
	entity *records.Entity
	cols   []column
}

// childKind is how the rows of a child file combine into their owner's field.
type childKind uint8

const (
	kRoles         childKind = iota // records.Role entries of User.roles, keyed by org and role
	kProfiles                       // UserProfile objects of User.userProfiles, keyed by profileId
	kRefs                           // references in a KRefs field, keyed by the reference
	kLineItemLOs                    // {source, learningObjectiveIds} groups of LineItem.learningObjectiveSet
	kResultLOs                      // {source, learningObjectiveResults} groups of Result.learningObjectiveSet
	kSingleRef                      // one KRef field (a score scale); one row per owner
	kNumChildKinds                  // count
)

// childFile is a CSV file whose rows are parts of another entity's objects.
type childFile struct {
	file     string
	owner    string // the owner's file ("users")
	ownerCol string // the column naming the owner
	field    string // the owner's field the rows fill
	kind     childKind
	keyCols  []string // the columns that identify a row within its owner (besides the owner)
	notKept  []string // columns validated, then not kept
}

// entityFiles maps every file of the binding whose rows are records objects.
var entityFiles = []entityFile{
	{"orgs", records.Org, []column{
		{"name", "name", cText}, {"type", "type", cText}, {"identifier", "identifier", cText}, {"parentSourcedId", "parent", cText},
	}},
	{"academicSessions", records.AcademicSession, []column{
		{"title", "title", cText}, {"type", "type", cText}, {"startDate", "startDate", cText}, {"endDate", "endDate", cText},
		{"parentSourcedId", "parent", cText}, {"schoolYear", "schoolYear", cText},
	}},
	{"courses", records.Course, []column{
		{"schoolYearSourcedId", "schoolYear", cText}, {"title", "title", cText}, {"courseCode", "courseCode", cText},
		{"grades", "grades", cList}, {"orgSourcedId", "org", cText}, {"subjects", "subjects", cList}, {"subjectCodes", "subjectCodes", cList},
	}},
	{"classes", records.Class, []column{
		{"title", "title", cText}, {"grades", "grades", cList}, {"courseSourcedId", "course", cText}, {"classCode", "classCode", cText},
		{"classType", "classType", cText}, {"location", "location", cText}, {"schoolSourcedId", "school", cText},
		{"termSourcedIds", "terms", cList}, {"subjects", "subjects", cList}, {"subjectCodes", "subjectCodes", cList}, {"periods", "periods", cList},
	}},
	{"users", records.User, []column{
		{"enabledUser", "enabledUser", cText}, {"username", "username", cText}, {"userIds", "userIds", cUserIDs},
		{"givenName", "givenName", cText}, {"familyName", "familyName", cText}, {"middleName", "middleName", cText},
		{"identifier", "identifier", cText}, {"email", "email", cText}, {"sms", "sms", cText}, {"phone", "phone", cText},
		{"agentSourcedIds", "agents", cList}, {"grades", "grades", cList}, {"password", "", cPassword},
		{"userMasterIdentifier", "userMasterIdentifier", cText}, {"preferredGivenName", "preferredFirstName", cText},
		{"preferredMiddleName", "preferredMiddleName", cText}, {"preferredFamilyName", "preferredLastName", cText},
		{"primaryOrgSourcedId", "primaryOrg", cText}, {"pronouns", "pronouns", cText},
	}},
	{"enrollments", records.Enrollment, []column{
		{"classSourcedId", "class", cText}, {"schoolSourcedId", "school", cText}, {"userSourcedId", "user", cText},
		{"role", "role", cText}, {"primary", "primary", cText}, {"beginDate", "beginDate", cText}, {"endDate", "endDate", cText},
	}},
	{"demographics", records.Demographics, []column{
		{"birthDate", "birthDate", cText}, {"sex", "sex", cText},
		{"americanIndianOrAlaskaNative", "americanIndianOrAlaskaNative", cText}, {"asian", "asian", cText},
		{"blackOrAfricanAmerican", "blackOrAfricanAmerican", cText},
		{"nativeHawaiianOrOtherPacificIslander", "nativeHawaiianOrOtherPacificIslander", cText}, {"white", "white", cText},
		{"demographicRaceTwoOrMoreRaces", "demographicRaceTwoOrMoreRaces", cText},
		{"hispanicOrLatinoEthnicity", "hispanicOrLatinoEthnicity", cText}, {"countryOfBirthCode", "countryOfBirthCode", cText},
		{"stateOfBirthAbbreviation", "stateOfBirthAbbreviation", cText}, {"cityOfBirth", "cityOfBirth", cText},
		{"publicSchoolResidenceStatus", "publicSchoolResidenceStatus", cText},
	}},
	{"resources", records.Resource, []column{
		{"vendorResourceId", "vendorResourceId", cText}, {"title", "title", cText}, {"roles", "roles", cJSONStrings},
		{"importance", "importance", cText}, {"vendorId", "vendorId", cText}, {"applicationId", "applicationId", cText},
	}},
	{"categories", records.Category, []column{
		{"title", "title", cText}, {"weight", "weight", cFloat},
	}},
	{"scoreScales", records.ScoreScale, []column{
		{"title", "title", cText}, {"type", "type", cText}, {"orgSourcedId", "", cNotKept}, {"courseSourcedId", "course", cText},
		{"classSourcedId", "class", cText}, {"scoreScaleValue", "scoreScaleValue", cScaleValues},
	}},
	{"lineItems", records.LineItem, []column{
		{"title", "title", cText}, {"description", "description", cText}, {"assignDate", "assignDate", cDateTime},
		{"dueDate", "dueDate", cDateTime}, {"classSourcedId", "class", cText}, {"categorySourcedId", "category", cText},
		{"academicSessionSourcedId", "academicSession", cText}, {"resultValueMin", "resultValueMin", cFloat},
		{"resultValueMax", "resultValueMax", cFloat}, {"schoolSourcedId", "school", cText},
	}},
	{"results", records.Result, []column{
		{"lineItemSourcedId", "lineItem", cText}, {"studentSourcedId", "student", cText}, {"scoreStatus", "scoreStatus", cText},
		{"score", "score", cFloat}, {"scoreDate", "scoreDate", cText}, {"comment", "comment", cText}, {"textScore", "textScore", cText},
		{"classSourcedId", "class", cText}, {"inProgress", "inProgress", cText}, {"incomplete", "incomplete", cText},
		{"late", "late", cText}, {"missing", "missing", cText},
	}},
}

// childFiles maps every file of the binding whose rows are parts of another entity's
// objects. Their own sourcedIds are checked for duplicates but not kept (except a
// userProfile's, which is its profileId); the export derives stable ones.
var childFiles = []childFile{
	{file: "userProfiles", owner: "users", ownerCol: "userSourcedId", field: "userProfiles", kind: kProfiles, keyCols: []string{"sourcedId"}},
	{file: "roles", owner: "users", ownerCol: "userSourcedId", field: "roles", kind: kRoles, keyCols: []string{"orgSourcedId", "role"}},
	{file: "classResources", owner: "classes", ownerCol: "classSourcedId", field: "resources", kind: kRefs, keyCols: []string{"resourceSourcedId"}, notKept: []string{"title"}},
	{file: "courseResources", owner: "courses", ownerCol: "courseSourcedId", field: "resources", kind: kRefs, keyCols: []string{"resourceSourcedId"}, notKept: []string{"title"}},
	{file: "userResources", owner: "users", ownerCol: "userSourcedId", field: "resources", kind: kRefs, keyCols: []string{"resourceSourcedId"}, notKept: []string{"orgSourcedId", "classSourcedId"}},
	{file: "lineItemLearningObjectiveIds", owner: "lineItems", ownerCol: "lineItemSourcedId", field: "learningObjectiveSet", kind: kLineItemLOs, keyCols: []string{"source", "learningObjectiveId"}},
	{file: "lineItemScoreScales", owner: "lineItems", ownerCol: "lineItemSourcedId", field: "scoreScale", kind: kSingleRef, notKept: []string{"title"}},
	{file: "resultLearningObjectiveIds", owner: "results", ownerCol: "resultSourcedId", field: "learningObjectiveSet", kind: kResultLOs, keyCols: []string{"source", "learningObjectiveId"}},
	{file: "resultScoreScales", owner: "results", ownerCol: "resultSourcedId", field: "scoreScale", kind: kSingleRef, notKept: []string{"title"}},
}

// fileInfo is everything the importer knows about one file of the binding.
type fileInfo struct {
	spec   csvspec.File
	index  int         // position in csvspec.Files
	entity *entityFile // exactly one of entity and child is set
	child  *childFile
	// ent is the records entity whose objects the rows are (entity files) or fill (child files).
	ent *records.Entity
	// colField maps a CSV column to the records field it fills, for error messages.
	colField map[string]string
	// fieldCol maps a records field back to its CSV column.
	fieldCol map[string]string
	// sensitive marks columns whose values must never be echoed.
	sensitive map[string]bool
	// convs holds each spec column's conversion (by column position).
	convs []conv
	// children lists the child files that fill fields of this entity file's objects.
	children []*fileInfo
	// refTargets maps a spec column position to the file it references ("" if none).
	refTargets []string
}

// The catalogue: every file of the binding with its mapping, checked once at start.
var (
	files     []*fileInfo                // in csvspec order
	fileNamed map[string]*fileInfo       // by csvspec name ("users") and file name ("users.csv")
	entityOf  map[string]*records.Entity // entity files' entities by file name ("users")
	_         = buildCatalog()
)

// buildCatalog joins the binding (csvspec) with the mapping tables. A mapping that
// names an unknown file, column or field is a programming error: it panics at start.
func buildCatalog() bool {
	fileNamed, entityOf = map[string]*fileInfo{}, map[string]*records.Entity{}
	for i, spec := range csvspec.Files {
		fi := &fileInfo{spec: spec, index: i, colField: map[string]string{}, fieldCol: map[string]string{}, sensitive: map[string]bool{}}
		fi.convs = make([]conv, len(spec.Columns))
		fi.refTargets = make([]string, len(spec.Columns))
		for j, c := range spec.Columns {
			fi.refTargets[j] = c.Ref
		}
		files = append(files, fi)
		fileNamed[spec.Name] = fi
		fileNamed[spec.FileName] = fi
	}
	for i := range entityFiles {
		ef := &entityFiles[i]
		fi := mustFile(ef.file)
		fi.entity, fi.ent = ef, ef.entity
		entityOf[ef.file] = ef.entity
		fi.colField["sourcedId"], fi.fieldCol["sourcedId"] = "sourcedId", "sourcedId"
		fi.colField["status"], fi.fieldCol["status"] = "status", "status"
		fi.colField["dateLastModified"], fi.fieldCol["dateLastModified"] = "dateLastModified", "dateLastModified"
		for _, c := range ef.cols {
			j := fi.spec.Index(c.csv)
			if j < 0 {
				panic("importer: mapping names unknown column " + ef.file + "." + c.csv)
			}
			fi.convs[j] = c.conv
			if c.field == "" {
				if c.conv != cPassword && c.conv != cNotKept {
					panic("importer: mapping of " + ef.file + "." + c.csv + " has no field")
				}
				if c.conv == cPassword {
					fi.sensitive[c.csv] = true
				}
				continue
			}
			f, ok := ef.entity.Field(c.field)
			if !ok {
				panic("importer: mapping names unknown field " + ef.entity.Name + "." + c.field)
			}
			fi.colField[c.csv], fi.fieldCol[c.field] = c.field, c.csv
			fi.sensitive[c.csv] = f.Sensitive
		}
		for j, c := range fi.spec.Columns {
			if j >= 3 && fi.colField[c.Name] == "" && fi.convs[j] != cPassword && fi.convs[j] != cNotKept {
				panic("importer: column " + ef.file + "." + c.Name + " is not mapped")
			}
		}
		if ef.entity == records.Demographics {
			fi.sensitive["sourcedId"] = false
		}
	}
	for i := range childFiles {
		cf := &childFiles[i]
		fi := mustFile(cf.file)
		owner := mustFile(cf.owner)
		fi.child, fi.ent = cf, owner.ent
		owner.children = append(owner.children, fi)
		f, ok := owner.ent.Field(cf.field)
		if !ok {
			panic("importer: child mapping names unknown field " + owner.ent.Name + "." + cf.field)
		}
		for j, c := range fi.spec.Columns {
			fi.colField[c.Name] = cf.field
			fi.sensitive[c.Name] = f.Sensitive && j >= 3 && c.Ref == "" && c.Name != "source" && c.Name != "learningObjectiveId"
			if c.Name == "password" {
				fi.convs[j] = cPassword
				fi.sensitive[c.Name] = true
			}
		}
		fi.fieldCol[cf.field] = cf.ownerCol
		for _, k := range append(append([]string{cf.ownerCol}, cf.keyCols...), cf.notKept...) {
			if fi.spec.Index(k) < 0 {
				panic("importer: child mapping names unknown column " + cf.file + "." + k)
			}
		}
	}
	for _, fi := range files {
		if fi.entity == nil && fi.child == nil {
			panic("importer: file " + fi.spec.Name + " is not mapped")
		}
	}
	return true
}

func mustFile(name string) *fileInfo {
	fi, ok := fileNamed[name]
	if !ok {
		panic(fmt.Sprintf("importer: unknown file %q", name))
	}
	return fi
}

// FileMapping describes, for one file of the binding, where its columns go: the
// mapping tables above, for documentation, tests and the benchmark's raw baseline.
type FileMapping struct {
	File    string            // the binding's name, e.g. "users"
	Entity  *records.Entity   // the entity whose objects the rows are, or fill
	Columns map[string]string // CSV column -> records field ("" when not kept)
	// Child files fill one field of another file's objects.
	Owner       string // the owner's file, e.g. "users" for roles; "" for entity files
	OwnerColumn string // the column naming the owner, e.g. "userSourcedId"
	Field       string // the owner's field, e.g. "roles"
}

// Mapping returns the mapping of every file of the binding, in the binding's order.
func Mapping() []FileMapping {
	var out []FileMapping
	for _, fi := range files {
		m := FileMapping{File: fi.spec.Name, Entity: fi.ent, Columns: map[string]string{}}
		for _, c := range fi.spec.Columns {
			if fi.child != nil {
				m.Columns[c.Name] = ""
				continue
			}
			m.Columns[c.Name] = fi.colField[c.Name]
		}
		if fi.child != nil {
			m.Owner, m.OwnerColumn, m.Field = fi.child.owner, fi.child.ownerCol, fi.child.field
		}
		out = append(out, m)
	}
	return out
}
