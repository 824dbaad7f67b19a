package cache

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"registrar/authz"
	"registrar/records"
)

// Change is one entry of the store's change log, as far as the generation needs it.
type Change struct {
	ID     int64
	Entity string
}

// ChangeLog reads the store's change log: up to limit changes with id > after, in
// id order, never past an id that may still commit (sqlstore's ChangesAfter). Every
// write appends to the log in its own transaction, so the log is complete.
type ChangeLog func(ctx context.Context, after int64, limit int) ([]Change, error)

// RosterEntities are the entities authz.Resolve reads through its Directory: a
// user's roles, status and agents (users), a student's birth date (demographics),
// the org tree (orgs), and registrar's own counselors' caseloads and dependency
// flags (logged under authz.ChangeCaseload and authz.ChangeDependent). Enrollments,
// classes and the rest are not part of a Scope: the store evaluates them in SQL on
// every query.
var RosterEntities = []string{records.User.Name, records.Demographics.Name, records.Org.Name, authz.ChangeCaseload, authz.ChangeDependent}

// Generations tells the store's roster generation: the id of the newest change to
// a roster entity. It reads the change log from where it last stopped, so in the
// steady state one indexed query that returns no row answers it.
type Generations struct {
	log   ChangeLog
	watch map[string]bool

	mu    sync.Mutex
	known int64 // the log has been read up to here
	gen   int64 // the newest roster change at or below known

	catchingUp sync.Mutex // held by the one caller reading a long stretch of the log
}

// Pages of the change log: a request reads one short page; when that is full (a
// process that just started, an import that just committed) one request at a time
// reads on in long pages, up to a bound, and the others do without the cache.
const (
	shortPage = 256
	longPage  = 5000
	longPages = 20
)

// NewGenerations returns a generation reader over log that watches entities.
func NewGenerations(log ChangeLog, entities []string) *Generations {
	g := &Generations{log: log, watch: map[string]bool{}}
	for _, e := range entities {
		g.watch[e] = true
	}
	return g
}

// Current returns the roster generation as of now: every roster change committed
// before the call (and readable: not behind a hole that may still fill) is at or
// below it. ok is false when the log is further ahead than the call reads (right
// after a start or a large import): the caller should not use the cache this time.
func (g *Generations) Current(ctx context.Context) (gen int64, ok bool, err error) {
	gen, full, err := g.read(ctx, shortPage)
	if err != nil || !full {
		return gen, err == nil, err
	}
	if !g.catchingUp.TryLock() {
		return 0, false, nil // another request is reading the stretch
	}
	defer g.catchingUp.Unlock()
	for range longPages {
		if gen, full, err = g.read(ctx, longPage); err != nil || !full {
			return gen, err == nil, err
		}
	}
	return 0, false, nil
}

// read reads one page after what is known; full reports that more may follow.
func (g *Generations) read(ctx context.Context, page int) (gen int64, full bool, err error) {
	g.mu.Lock()
	after := g.known
	g.mu.Unlock()
	cs, err := g.log(ctx, after, page)
	if err != nil {
		return 0, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range cs {
		if g.watch[c.Entity] && c.ID > g.gen {
			g.gen = c.ID
		}
	}
	if len(cs) > 0 {
		g.known = max(g.known, cs[len(cs)-1].ID)
	}
	return g.gen, len(cs) == page, nil
}

// Scopes resolves principals into scopes through a cache. A scope is kept under a
// key made of everything it was computed from: the principal's kind, id and orgs,
// the date, and the roster generation. A write to a user, a demographics record, an
// org, a caseload or a dependency flag moves the generation, so the next request
// misses and resolves afresh; the TTL bounds what a missed change (none known) could
// cost.
//
// Reading the generation is a store query itself, so a principal whose scope takes
// one store query (a teacher, a student: their roles) is resolved directly: the
// resolver remembers, in process, which principals were that cheap last time. That
// memory is a hint about cost only; either path gives the same scope.
type Scopes struct {
	c     Cache
	dir   authz.Directory
	gen   *Generations
	ttl   time.Duration
	cheap *Memory // principals whose last resolve took at most one store query
}

// NewScopes returns a caching resolver. ttl defaults to 30 seconds.
func NewScopes(c Cache, dir authz.Directory, gen *Generations, ttl time.Duration) *Scopes {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &Scopes{c: c, dir: dir, gen: gen, ttl: ttl, cheap: NewMemory(MemoryOptions{MaxEntries: 1 << 16, MaxBytes: 16 << 20})}
}

// cheapFor is how long a principal is remembered as cheap to resolve.
const cheapFor = 10 * time.Minute

// Resolve is authz.Resolve through the cache.
func (s *Scopes) Resolve(ctx context.Context, p *authz.Principal, today time.Time) (*authz.Scope, error) {
	if p.Kind == "client" && slices.Contains(p.Orgs, authz.AllOrgs) {
		// A client of the whole installation resolves without a store query.
		return authz.Resolve(ctx, s.dir, p, today)
	}
	orgs := slices.Clone(p.Orgs)
	slices.Sort(orgs)
	who := []string{p.Kind, p.ID, strings.Join(orgs, ",")}
	cheapKey := Key("cheap", who...)
	if _, cheap, _ := s.cheap.Get(ctx, cheapKey); cheap {
		return s.resolve(ctx, p, today, cheapKey)
	}
	g, ok, err := s.gen.Current(ctx)
	if err != nil || !ok {
		return s.resolve(ctx, p, today, cheapKey)
	}
	key := Key("scope", append(who, today.Format(time.DateOnly), strconv.FormatInt(g, 10))...)
	if b, hit, _ := s.c.Get(ctx, key); hit { // an error is a miss: the store answers
		if sc, err := authz.UnmarshalScope(b, p); err == nil {
			return sc, nil
		}
	}
	sc, err := s.resolve(ctx, p, today, cheapKey)
	if err != nil {
		return nil, err
	}
	if b, err := sc.MarshalBinary(); err == nil {
		_ = s.c.Set(ctx, key, b, s.ttl) // a failed write costs the next request a miss, nothing more
	}
	return sc, nil
}

// resolve runs authz.Resolve, counting its store queries to note whether the
// principal is cheap to resolve.
func (s *Scopes) resolve(ctx context.Context, p *authz.Principal, today time.Time, cheapKey string) (*authz.Scope, error) {
	d := &counting{Directory: s.dir}
	sc, err := authz.Resolve(ctx, d, p, today)
	if err != nil {
		return nil, err
	}
	if d.queries <= 1 {
		_ = s.cheap.Set(ctx, cheapKey, nil, cheapFor) // memory: cannot fail for a small value
	} else {
		_ = s.cheap.Delete(ctx, cheapKey)
	}
	return sc, nil
}

// counting is a Directory that estimates the store queries made through it (one
// resolve), from what sqlstore's implementation does for each call.
type counting struct {
	authz.Directory
	queries int
}

func (c *counting) UserRoles(ctx context.Context, id string) ([]records.Role, bool, error) {
	c.queries++
	return c.Directory.UserRoles(ctx, id)
}

func (c *counting) Agents(ctx context.Context, id string) ([]string, error) {
	c.queries++
	return c.Directory.Agents(ctx, id)
}

func (c *counting) Birth(ctx context.Context, id string) (string, []string, error) {
	c.queries += 2 // the grades, then the sealed birth date (and its decryption)
	return c.Directory.Birth(ctx, id)
}

func (c *counting) Caseload(ctx context.Context, counselor string) ([]string, error) {
	c.queries++
	return c.Directory.Caseload(ctx, counselor)
}

func (c *counting) Dependents(ctx context.Context, guardian string) ([]string, error) {
	c.queries++
	return c.Directory.Dependents(ctx, guardian)
}

func (c *counting) ExpandOrgs(ctx context.Context, orgs []string) ([]string, bool, error) {
	all, root, err := c.Directory.ExpandOrgs(ctx, orgs)
	if !slices.Contains(orgs, authz.AllOrgs) {
		c.queries += len(orgs) + len(all) // each org's parent, then each node's children
	}
	return all, root, err
}
