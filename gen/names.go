package gen

// Built-in word lists. Names are common given and family names; people are
// formed by drawing them independently at random, so any resemblance of a
// generated person to a real one is coincidental. Place words are combined
// into invented town, school and district names.

var femaleNames = []string{
	"Olivia", "Emma", "Charlotte", "Amelia", "Sophia", "Mia", "Isabella", "Ava",
	"Evelyn", "Luna", "Harper", "Sofia", "Camila", "Eleanor", "Elizabeth", "Violet",
	"Scarlett", "Emily", "Hazel", "Lily", "Gianna", "Aurora", "Penelope", "Aria",
	"Nora", "Chloe", "Ellie", "Mila", "Avery", "Layla", "Abigail", "Ella",
	"Isla", "Eliana", "Nova", "Madison", "Zoe", "Ivy", "Grace", "Lucy",
	"Willow", "Emilia", "Riley", "Naomi", "Victoria", "Stella", "Maya", "Paisley",
	"Hannah", "Leah", "Valentina", "Natalie", "Addison", "Brooklyn", "Savannah", "Audrey",
	"Claire", "Anna", "Maria", "Ximena", "Priya", "Aaliyah", "Fatima", "Mei",
	"Yara", "Amara", "Sienna", "Jasmine", "Elena", "Rosa", "Lucia", "Daniela",
}

var maleNames = []string{
	"Liam", "Noah", "Oliver", "James", "Elijah", "Mateo", "Theodore", "Henry",
	"Lucas", "William", "Benjamin", "Levi", "Sebastian", "Jack", "Ezra", "Michael",
	"Daniel", "Leo", "Owen", "Samuel", "Hudson", "Alexander", "Asher", "Luca",
	"Ethan", "John", "David", "Jackson", "Joseph", "Mason", "Luke", "Matthew",
	"Julian", "Dylan", "Elias", "Jacob", "Maverick", "Gabriel", "Logan", "Aiden",
	"Thomas", "Isaac", "Miles", "Grayson", "Santiago", "Anthony", "Wyatt", "Carter",
	"Jayden", "Ezekiel", "Caleb", "Cooper", "Josiah", "Charles", "Christopher", "Isaiah",
	"Nolan", "Cameron", "Nathan", "Joshua", "Kai", "Diego", "Omar", "Ravi",
	"Wei", "Kofi", "Andre", "Marcus", "Tomas", "Hugo", "Adrian", "Rafael",
}

var neutralNames = []string{
	"Alex", "Jordan", "Taylor", "Morgan", "Casey", "Rowan", "Quinn", "Reese",
	"Skyler", "Emerson", "Finley", "Sage", "River", "Parker", "Dakota", "Jamie",
}

var familyNames = []string{
	"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
	"Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas",
	"Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
	"Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
	"Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
	"Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell",
	"Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker",
	"Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy",
	"Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey",
	"Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
	"Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza",
	"Ruiz", "Hughes", "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers",
	"Long", "Ross", "Foster", "Jimenez", "Powell", "Jenkins", "Perry", "Russell",
	"Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes", "Gonzales", "Fisher",
	"Vasquez", "Simmons", "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham",
	"Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole", "Hayes", "Bryant",
	"Herrera", "Gibson", "Ellis", "Tran", "Medina", "Aguilar", "Stevens", "Murray",
	"Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez", "McDonald", "Woods",
	"Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen", "Freeman", "Webb",
	"Tucker", "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter",
	"Okafor", "Singh", "Wang", "Le", "Pham", "Ali", "Khan", "Yamamoto",
	"O'Brien", "Dubois", "Rossi", "Novak", "Kowalski", "Haddad", "Mensah", "Silva",
}

var placeFirst = []string{
	"Maple", "Cedar", "Willow", "Pine", "Oak", "Birch", "Elm", "Aspen",
	"Juniper", "Hazel", "Alder", "Spruce", "Laurel", "Cypress", "Linden", "Sycamore",
	"Briar", "Fern", "Heather", "Holly", "Amber", "Silver", "Copper", "Falcon",
	"Heron", "Quail", "Sparrow", "Otter", "Clover", "Thistle", "Bramble", "Meadow",
}

var placeSecond = []string{
	"brook", "field", "dale", "haven", "ridge", "wood", "view", "crest",
	"vale", "stead", "glen", "hollow", "bend", "run", "springs", "gate",
}

var schoolHonorifics = []string{
	"Lakeside", "Hillcrest", "Riverside", "Sunrise", "Northgate", "Southfield", "Eastbrook", "Westview",
	"Canyon", "Prairie", "Harbor", "Summit", "Valley", "Orchard", "Foothill", "Bayside",
}

// states are USPS abbreviations used for stateOfBirthAbbreviation.
var states = []string{
	"AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
	"KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
	"NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
	"WI", "WY",
}

// foreignCountries are ISO 3166-1 alpha-2 codes for students born abroad.
var foreignCountries = []string{"MX", "CA", "PH", "IN", "VN", "CN", "SV", "GT", "KR", "NG", "BR", "UA"}

// residenceStatuses are CEDS Public School Residence Status codes, most common first.
var residenceStatuses = []string{"01652", "01653", "01654", "01656", "01655"}

// areaCodes are combined with the fictional 555-01xx exchange.
var areaCodes = []string{"201", "303", "312", "404", "415", "503", "512", "602", "617", "702", "720", "808", "916", "971"}

var commentPhrases = []string{
	"Great work!", "Please see me about corrections.", "Nice improvement.",
	"Show your work next time.", "Excellent reasoning.", "Late, but complete.",
	"Review the unit vocabulary.", "Well organized answer.", "Check units on problem 3.",
}

var pronounsFemale = "she/her"
var pronounsMale = "he/him"
var pronounsNeutral = "they/them"
