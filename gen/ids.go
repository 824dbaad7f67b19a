package gen

import "math/rand/v2"

// kind separates the sourcedId and random streams of the entity types.
type kind uint64

const (
	kOrg kind = iota + 1
	kSession
	kCourse
	kClass
	kStudent
	kGuardian
	kTeacher
	kStaff // principals, counselors (2 per school) and the district administrator (index 0 of kAdmin)
	kAdmin
	kRole
	kEnrollment
	kCategory
	kScoreScale
	kLineItem
	kLineItemLO
	kLineItemScale
	kResult
	kCaseLO   // CASE learning-objective identifiers (UUIDs)
	kDistrict // random stream for district-level choices
)

// mix64 is the SplitMix64 finalizer, a bijection on uint64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const hexDigits = "0123456789abcdef"

// appendID appends the UUID-shaped (version 4 layout) sourcedId of entity
// (k, idx). 64 bits of the UUID are a bijection of (k, idx) under the seed,
// so ids are unique within a package for idx < 2^40; the rest is
// seed-derived filler.
func (g *gen) appendID(dst []byte, k kind, idx uint64) []byte {
	v := mix64((uint64(k)<<40 | idx&(1<<40-1)) ^ g.salt1)
	r := mix64(v ^ g.salt2)
	var u [16]byte
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16)
	u[6] = 0x40 | byte(r)&0x0f
	u[7] = byte(r >> 8)
	u[8] = 0x80 | byte(r>>16)&0x3f
	u[9], u[10] = byte(v>>8), byte(v)
	u[11], u[12], u[13], u[14], u[15] = byte(r>>24), byte(r>>32), byte(r>>40), byte(r>>48), byte(r>>56)
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0x0f])
	}
	return dst
}

// id returns the sourcedId of (k, idx) as a string.
func (g *gen) id(k kind, idx uint64) string { return string(g.appendID(make([]byte, 0, 36), k, idx)) }

// rng is a reseedable PCG stream: seed(k, idx) makes every entity's random
// choices independent of generation order.
type rng struct {
	pcg  rand.PCG
	r    *rand.Rand
	salt uint64
}

func newRNG(seed uint64) *rng {
	g := &rng{salt: mix64(seed ^ 0x6a09e667f3bcc908)}
	g.r = rand.New(&g.pcg)
	return g
}

func (g *rng) seed(k kind, idx uint64) {
	g.pcg.Seed(mix64(g.salt^uint64(k)*0x9e3779b97f4a7c15), mix64(idx^g.salt))
}

func (g *rng) intn(n int) int            { return g.r.IntN(n) }
func (g *rng) chance(p float64) bool     { return g.r.Float64() < p }
func (g *rng) pick(list []string) string { return list[g.r.IntN(len(list))] }
