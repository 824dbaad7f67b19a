package csvspec

// Vocabularies of the OneRoster 1.2 binding (see the REST OpenAPI documents
// for their meanings). Columns marked Ext also accept ext:<name> tokens.
var (
	// OrgTypes is the orgs.csv type vocabulary.
	OrgTypes = []string{"department", "district", "local", "national", "school", "state"}
	// AcademicSessionTypes is the academicSessions.csv type vocabulary.
	AcademicSessionTypes = []string{"gradingPeriod", "semester", "schoolYear", "term"}
	// ClassTypes is the classes.csv classType vocabulary.
	ClassTypes = []string{"homeroom", "scheduled"}
	// RoleTypes is the roles.csv roleType vocabulary (not extensible).
	RoleTypes = []string{"primary", "secondary"}
	// Roles is the roles.csv role vocabulary.
	Roles = []string{"aide", "counselor", "districtAdministrator", "guardian", "parent", "principal", "proctor", "relative", "siteAdministrator", "student", "systemAdministrator", "teacher"}
	// EnrollmentRoles is the enrollments.csv role vocabulary.
	EnrollmentRoles = []string{"administrator", "proctor", "student", "teacher"}
	// Sexes is the demographics.csv sex vocabulary.
	Sexes = []string{"male", "female", "unspecified", "other"}
	// ScoreStatuses is the results.csv scoreStatus vocabulary (note the spaces).
	ScoreStatuses = []string{"exempt", "fully graded", "not submitted", "partially graded", "submitted"}
	// LearningObjectiveSources is the learning-objective source vocabulary ("case" = 1EdTech CASE UUIDs).
	LearningObjectiveSources = []string{"case", "unknown"}
	// ResourceRoles is the resources.csv roles vocabulary.
	ResourceRoles = []string{"administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher"}
	// Importances is the resources.csv importance vocabulary.
	Importances = []string{"primary", "secondary"}
	// GradeLevels is the CEDS entry grade level code set commonly used for
	// grades columns; the binding leaves the grades vocabulary to local
	// agreement, so grades columns are not restricted to it.
	GradeLevels = []string{"IT", "PR", "PK", "TK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "PS", "UG", "Other"}
	// Bools is the true/false token set.
	Bools = []string{"true", "false"}
)

// lifecycle returns the three leading columns shared by every data file.
func lifecycle(ref string) []Column {
	return []Column{
		{Name: ColSourcedID, Type: GUID, Required: true, Ref: ref},
		{Name: ColStatus, Type: Enum, Enum: StatusValues},
		{Name: ColDateLastModified, Type: DateTime},
	}
}

func req(name string, t Type) Column { return Column{Name: name, Type: t, Required: true} }
func opt(name string, t Type) Column { return Column{Name: name, Type: t} }
func reqRef(name, ref string) Column { return Column{Name: name, Type: GUID, Required: true, Ref: ref} }
func optRef(name, ref string) Column { return Column{Name: name, Type: GUID, Ref: ref} }
func reqRefs(name, ref string) Column {
	return Column{Name: name, Type: GUIDList, Required: true, Ref: ref}
}
func optRefs(name, ref string) Column { return Column{Name: name, Type: GUIDList, Ref: ref} }
func reqEnum(name string, vocab []string, ext bool) Column {
	return Column{Name: name, Type: Enum, Required: true, Enum: vocab, Ext: ext}
}
func optEnum(name string, vocab []string, ext bool) Column {
	return Column{Name: name, Type: Enum, Enum: vocab, Ext: ext}
}

func file(name string, cols ...[]Column) File {
	var all []Column
	for _, c := range cols {
		all = append(all, c...)
	}
	return File{Name: name, FileName: name + ".csv", Columns: all, ManifestKey: "file." + name}
}

func cols(c ...Column) []Column { return c }

// Files lists every data file of the OneRoster 1.2 CSV binding in dependency
// order: a file only references files listed before it or itself (users
// references users through agentSourcedIds, orgs and academicSessions their
// parents). Importers can load in this order; exporters write in it.
var Files = []File{
	file("orgs", lifecycle(""), cols(
		req("name", String),
		reqEnum("type", OrgTypes, true),
		opt("identifier", String),
		optRef("parentSourcedId", "orgs"),
	)),
	file("academicSessions", lifecycle(""), cols(
		req("title", String),
		reqEnum("type", AcademicSessionTypes, true),
		req("startDate", Date),
		req("endDate", Date),
		optRef("parentSourcedId", "academicSessions"),
		req("schoolYear", Year),
	)),
	file("courses", lifecycle(""), cols(
		optRef("schoolYearSourcedId", "academicSessions"),
		req("title", String),
		opt("courseCode", String),
		opt("grades", List),
		reqRef("orgSourcedId", "orgs"),
		opt("subjects", List),
		opt("subjectCodes", List),
	)),
	file("classes", lifecycle(""), cols(
		req("title", String),
		opt("grades", List),
		reqRef("courseSourcedId", "courses"),
		opt("classCode", String),
		reqEnum("classType", ClassTypes, true),
		opt("location", String),
		reqRef("schoolSourcedId", "orgs"),
		reqRefs("termSourcedIds", "academicSessions"),
		opt("subjects", List),
		opt("subjectCodes", List),
		opt("periods", List),
	)),
	file("users", lifecycle(""), cols(
		req("enabledUser", Bool),
		req("username", String),
		opt("userIds", List), // items are {type:identifier}
		req("givenName", String),
		req("familyName", String),
		opt("middleName", String),
		opt("identifier", String),
		opt("email", String),
		opt("sms", String),
		opt("phone", String),
		optRefs("agentSourcedIds", "users"),
		opt("grades", List),
		opt("password", String),
		opt("userMasterIdentifier", String),
		opt("preferredGivenName", String),
		opt("preferredMiddleName", String),
		opt("preferredFamilyName", String),
		optRef("primaryOrgSourcedId", "orgs"),
		opt("pronouns", String),
	)),
	file("userProfiles", lifecycle(""), cols(
		reqRef("userSourcedId", "users"),
		req("profileType", String),
		req("vendorId", String),
		opt("applicationId", String),
		opt("description", String),
		req("credentialType", String),
		req("username", String),
		opt("password", String),
	)),
	file("roles", lifecycle(""), cols(
		reqRef("userSourcedId", "users"),
		reqEnum("roleType", RoleTypes, false),
		reqEnum("role", Roles, true),
		opt("beginDate", Date),
		opt("endDate", Date),
		reqRef("orgSourcedId", "orgs"),
		optRef("userProfileSourcedId", "userProfiles"),
	)),
	file("enrollments", lifecycle(""), cols(
		reqRef("classSourcedId", "classes"),
		reqRef("schoolSourcedId", "orgs"),
		reqRef("userSourcedId", "users"),
		reqEnum("role", EnrollmentRoles, true),
		opt("primary", Bool),
		opt("beginDate", Date),
		opt("endDate", Date),
	)),
	// demographics.sourcedId is the sourcedId of the user described.
	file("demographics", lifecycle("users"), cols(
		opt("birthDate", Date),
		optEnum("sex", Sexes, true),
		opt("americanIndianOrAlaskaNative", Bool),
		opt("asian", Bool),
		opt("blackOrAfricanAmerican", Bool),
		opt("nativeHawaiianOrOtherPacificIslander", Bool),
		opt("white", Bool),
		opt("demographicRaceTwoOrMoreRaces", Bool),
		opt("hispanicOrLatinoEthnicity", Bool),
		opt("countryOfBirthCode", String),
		opt("stateOfBirthAbbreviation", String),
		opt("cityOfBirth", String),
		opt("publicSchoolResidenceStatus", String),
	)),
	file("resources", lifecycle(""), cols(
		req("vendorResourceId", String),
		opt("title", String),
		Column{Name: "roles", Type: List, Enum: ResourceRoles},
		optEnum("importance", Importances, false),
		opt("vendorId", String),
		opt("applicationId", String),
	)),
	file("classResources", lifecycle(""), cols(
		opt("title", String),
		reqRef("classSourcedId", "classes"),
		reqRef("resourceSourcedId", "resources"),
	)),
	file("courseResources", lifecycle(""), cols(
		opt("title", String),
		reqRef("courseSourcedId", "courses"),
		reqRef("resourceSourcedId", "resources"),
	)),
	file("userResources", lifecycle(""), cols(
		reqRef("userSourcedId", "users"),
		optRef("orgSourcedId", "orgs"),
		optRef("classSourcedId", "classes"),
		reqRef("resourceSourcedId", "resources"),
	)),
	file("categories", lifecycle(""), cols(
		req("title", String),
		opt("weight", Float),
	)),
	file("scoreScales", lifecycle(""), cols(
		req("title", String),
		req("type", String),
		optRef("orgSourcedId", "orgs"),
		optRef("courseSourcedId", "courses"),
		reqRef("classSourcedId", "classes"),
		req("scoreScaleValue", List), // items are {itemValueLHS:itemValueRHS}
	)),
	file("lineItems", lifecycle(""), cols(
		req("title", String),
		opt("description", String),
		req("assignDate", Date),
		req("dueDate", Date),
		reqRef("classSourcedId", "classes"),
		reqRef("categorySourcedId", "categories"),
		reqRef("academicSessionSourcedId", "academicSessions"),
		opt("resultValueMin", Float),
		opt("resultValueMax", Float),
		reqRef("schoolSourcedId", "orgs"),
	)),
	file("lineItemLearningObjectiveIds", lifecycle(""), cols(
		reqRef("lineItemSourcedId", "lineItems"),
		reqEnum("source", LearningObjectiveSources, true),
		req("learningObjectiveId", String),
	)),
	file("lineItemScoreScales", lifecycle(""), cols(
		opt("title", String),
		reqRef("lineItemSourcedId", "lineItems"),
		reqRef("scoreScaleSourcedId", "scoreScales"),
	)),
	file("results", lifecycle(""), cols(
		reqRef("lineItemSourcedId", "lineItems"),
		reqRef("studentSourcedId", "users"),
		reqEnum("scoreStatus", ScoreStatuses, true),
		opt("score", Float),
		req("scoreDate", Date),
		opt("comment", String),
		opt("textScore", String),
		optRef("classSourcedId", "classes"),
		opt("inProgress", Bool),
		opt("incomplete", Bool),
		opt("late", Bool),
		opt("missing", Bool),
	)),
	file("resultLearningObjectiveIds", lifecycle(""), cols(
		reqRef("resultSourcedId", "results"),
		reqEnum("source", LearningObjectiveSources, true),
		req("learningObjectiveId", String),
		opt("score", Float),
		opt("textScore", String),
	)),
	file("resultScoreScales", lifecycle(""), cols(
		opt("title", String),
		reqRef("resultSourcedId", "results"),
		reqRef("scoreScaleSourcedId", "scoreScales"),
	)),
}

// manifestOrder is the order of the file.* rows in the binding's manifest
// table; WriteManifest follows it.
var manifestOrder = []string{
	"academicSessions", "categories", "classes", "classResources", "courses",
	"courseResources", "demographics", "enrollments", "lineItemLearningObjectiveIds",
	"lineItems", "lineItemScoreScales", "orgs", "resources", "resultLearningObjectiveIds",
	"results", "resultScoreScales", "roles", "scoreScales", "userProfiles",
	"userResources", "users",
}

var byName = func() map[string]int {
	m := make(map[string]int, 2*len(Files))
	for i, f := range Files {
		m[f.Name] = i
		m[f.FileName] = i
	}
	return m
}()

// Lookup finds a data file by entity name ("users") or file name ("users.csv").
func Lookup(name string) (File, bool) {
	if i, ok := byName[name]; ok {
		return Files[i], true
	}
	return File{}, false
}

// MustLookup is Lookup for names known at compile time; it panics on an unknown name.
func MustLookup(name string) File {
	f, ok := Lookup(name)
	if !ok {
		panic("csvspec: unknown file " + name)
	}
	return f
}

// ManifestFileName is the name of the control file of every package.
const ManifestFileName = "manifest.csv"
