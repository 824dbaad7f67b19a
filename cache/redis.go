package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions configure a Redis cache.
type RedisOptions struct {
	Addr     string // HOST:PORT
	Username string // ACL user; empty for the default user
	Password string // AUTH token
	// TLS, when set, is used for the connection (ElastiCache in-transit encryption).
	// Without it only a loopback address is accepted: the AUTH token and the access
	// pattern must not cross a network in the clear.
	TLS *tls.Config
	// Timeout bounds every call, connecting included (default 50ms): a slow cache
	// must cost a request less than the database work it saves.
	Timeout time.Duration
	// DialTimeout bounds establishing a connection, TLS handshake included (default
	// 4 x Timeout, and never more than Timeout for a call already under way).
	DialTimeout time.Duration
	// BreakerThreshold consecutive failures open the breaker (default 3).
	BreakerThreshold int
	// BreakerCooldown is the first wait before a probe (default 500ms); it doubles
	// on every failed probe up to BreakerMaxCooldown (default 5s).
	BreakerCooldown    time.Duration
	BreakerMaxCooldown time.Duration
	// PoolSize is the number of connections (default go-redis's: 10 per CPU).
	PoolSize int
	// Logger receives one line when Redis starts failing and one when it is back
	// (default: discarded).
	Logger *slog.Logger
	// Now replaces the clock of the breaker (tests).
	Now func() time.Time
}

// Redis is the shared cache of a scaled-out deployment.
type Redis struct {
	c       *redis.Client
	timeout time.Duration
	br      *breaker
	log     *slog.Logger

	hits, misses, errs, skipped atomic.Uint64
}

var _ Cache = (*Redis)(nil)

// NewRedis returns a Redis cache. It does not connect: the first call does, so a
// server starts (degraded) while Redis is away.
func NewRedis(o RedisOptions) (*Redis, error) {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("cache: redis address %q: want HOST:PORT", o.Addr)
	}
	if o.TLS == nil && !isLoopback(host) {
		return nil, fmt.Errorf("cache: refusing plain TCP to Redis at %q, which is not a loopback address: turn on TLS (--redis-tls)", o.Addr)
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 4 * o.Timeout
	}
	if o.BreakerThreshold <= 0 {
		o.BreakerThreshold = 3
	}
	if o.BreakerCooldown <= 0 {
		o.BreakerCooldown = 500 * time.Millisecond
	}
	if o.BreakerMaxCooldown < o.BreakerCooldown {
		o.BreakerMaxCooldown = max(5*time.Second, o.BreakerCooldown)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	quietOnce.Do(func() { redis.SetLogger(quiet{}) })
	var tlsConf *tls.Config
	if o.TLS != nil {
		tlsConf = o.TLS.Clone()
		if tlsConf.MinVersion < tls.VersionTLS12 {
			tlsConf.MinVersion = tls.VersionTLS12
		}
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = host
		}
	}
	c := redis.NewClient(&redis.Options{
		Addr: o.Addr, Username: o.Username, Password: o.Password, TLSConfig: tlsConf,
		// One attempt per call and no client-side retries: the breaker decides when
		// to try again, and a request never waits on more than one timeout.
		MaxRetries: -1, DialerRetries: 1, DialTimeout: o.DialTimeout,
		ReadTimeout: o.Timeout, WriteTimeout: o.Timeout, PoolTimeout: o.Timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		// RESP2 and no optional handshakes: the same commands work on ElastiCache,
		// Redis OSS and Valkey, and a handshake never adds a failure of its own.
		Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return &Redis{c: c, timeout: o.Timeout, br: newBreaker(o.BreakerThreshold, o.BreakerCooldown, o.BreakerMaxCooldown, o.Now), log: o.Logger}, nil
}

// quiet replaces go-redis's own logger, which prints every failed dial to stderr:
// the breaker's transitions (logged once each), registrar_cache_errors_total and
// /readyz say the same without a line per request.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// do runs one call through the breaker under the call timeout.
func (r *Redis) do(ctx context.Context, fn func(context.Context) error) error {
	if !r.br.allow() {
		r.skipped.Add(1)
		return ErrUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	err := fn(cctx)
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		if r.br.success() {
			r.log.Info("cache: Redis answers again; the cache is back in use")
		}
		return err
	case callerGone(ctx):
		// The request went away, or gave the call less time than our timeout:
		// that says nothing about Redis.
		r.br.abandoned()
		return fmt.Errorf("cache: redis: %w", err)
	}
	r.errs.Add(1)
	if r.br.failure() {
		r.log.Warn("cache: Redis is failing; requests are served from the database until it answers again", "err", err)
	}
	return fmt.Errorf("cache: redis: %w", err)
}

func callerGone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Get implements Cache.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	var val []byte
	err := r.do(ctx, func(ctx context.Context) error {
		var err error
		val, err = r.c.Get(ctx, key).Bytes()
		return err
	})
	switch {
	case err == nil:
		r.hits.Add(1)
		return val, true, nil
	case errors.Is(err, redis.Nil):
		r.misses.Add(1)
		return nil, false, nil
	}
	r.misses.Add(1)
	return nil, false, err
}

// Set implements Cache.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkSet(key, val, ttl); err != nil {
		return err
	}
	return r.do(ctx, func(ctx context.Context) error { return r.c.Set(ctx, key, val, ttl).Err() })
}

// Delete implements Cache.
func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return r.do(ctx, func(ctx context.Context) error { return r.c.Del(ctx, keys...).Err() })
}

// Ping implements Cache. While the breaker is open and cooling down it answers
// ErrUnavailable without asking Redis; after the cooldown it is a probe.
func (r *Redis) Ping(ctx context.Context) error {
	return r.do(ctx, func(ctx context.Context) error { return r.c.Ping(ctx).Err() })
}

// Stats implements Cache.
func (r *Redis) Stats() Stats {
	return Stats{Backend: "redis", Hits: r.hits.Load(), Misses: r.misses.Load(), Errors: r.errs.Load(), Skipped: r.skipped.Load(), Degraded: r.br.degraded()}
}

// Close implements Cache.
func (r *Redis) Close() error { return r.c.Close() }
