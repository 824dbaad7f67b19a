package cache_test

// What each per-request step costs, alone, with and without the cache: the numbers
// behind what docs/cache.md chose to cache.
//
//	go test ./cache -run '^$' -bench RequestParts

import (
	"context"
	"testing"

	"registrar/authz"
	"registrar/cache"
	"registrar/internal/testdistrict"
)

func BenchmarkRequestParts(b *testing.B) {
	ctx := context.Background()
	h := newHarness(b, nil)
	// As cmd/registrar wires them: memory alone, memory in front of sealed Redis;
	// and sealed Redis alone, where every lookup is a round trip.
	mem := cache.NewMemory(cache.MemoryOptions{})
	redisOnly := cache.NewSealed(newRedis(b, cache.RedisOptions{Addr: redisAddr(b)}), keysOf(b, h.vault))
	redis := cache.NewTiered(cache.NewMemory(cache.MemoryOptions{}), redisOnly, 0)
	caches := []struct {
		name string
		c    cache.Cache
	}{{"memory", mem}, {"redis", redis}, {"redis alone", redisOnly}}
	clientID, clientTok := h.client([]string{authz.RosterReadonly}, testdistrict.District)
	userTok := h.user(testdistrict.TeacherA)

	authenticate := func(b *testing.B, tok string) {
		for b.Loop() {
			if _, err := h.auth.Authenticate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The authenticator is shared: the cache is set for the cached runs and removed after.
	for _, who := range []struct{ name, tok string }{{"a person", userTok}, {"a client", clientTok}} {
		b.Run("authenticate "+who.name+"/verify", func(b *testing.B) { authenticate(b, who.tok) })
		for _, c := range caches {
			b.Run("authenticate "+who.name+"/"+c.name, func(b *testing.B) {
				h.auth.SetVerifiedCache(c.c, tokTTL)
				defer h.auth.SetVerifiedCache(nil, 0)
				authenticate(b, who.tok)
			})
		}
	}
	b.Run("client row (revocation check)", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.store.Client(ctx, clientID); err != nil {
				b.Fatal(err)
			}
		}
	})
	gens := cache.NewGenerations(changeLog(h.store), cache.RosterEntities)
	b.Run("roster generation", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := gens.Current(ctx); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})

	principals := []struct {
		name string
		p    *authz.Principal
	}{
		{"teacher", &authz.Principal{Kind: "user", ID: testdistrict.TeacherA}},
		{"district admin", &authz.Principal{Kind: "user", ID: testdistrict.Admin}},
		{"parent", &authz.Principal{Kind: "user", ID: testdistrict.Guardian}},
		{"client of a district", &authz.Principal{Kind: "client", ID: clientID, Orgs: []string{testdistrict.District}}},
	}
	for _, pr := range principals {
		b.Run("resolve "+pr.name+"/store", func(b *testing.B) {
			for b.Loop() {
				if _, err := authz.Resolve(ctx, h.store, pr.p, testdistrict.Today); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, c := range caches {
			scopes := cache.NewScopes(c.c, h.store, gens, 0)
			b.Run("resolve "+pr.name+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := scopes.Resolve(ctx, pr.p, testdistrict.Today); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
