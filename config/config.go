// Package config is registrar's configuration: one table of settings, each with a
// default, an environment variable, a command-line flag and, for secrets, a *_FILE twin.
//
// Precedence is flags > environment > defaults. Secrets are never printed: String and
// the startup log show them as "(set)". The infrastructure program (infra/) imports this
// package to derive the task definition's environment and secrets from Settings, so
// the two cannot drift apart. It must not import any other registrar package.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Setting describes one configuration value.
type Setting struct {
	Name    string // flag name, without dashes
	Env     string // environment variable
	Default string
	Secret  bool   // read also from Env+"_FILE"; never printed
	Help    string // one line for --help
}

// Settings is the whole table. Order is the order of --help.
var Settings = []Setting{
	{Name: "data", Env: "REGISTRAR_DATA", Default: "./registrar-data", Help: "data directory (SQLite database, local keys, documents)"},
	{Name: "addr", Env: "REGISTRAR_ADDR", Default: "127.0.0.1:8080", Help: "listen address HOST:PORT; plain HTTP only on loopback"},
	{Name: "tls-cert", Env: "REGISTRAR_TLS_CERT", Help: "TLS certificate file (PEM)"},
	{Name: "tls-key", Env: "REGISTRAR_TLS_KEY", Help: "TLS private key file (PEM)"},
	{Name: "tls-self-signed", Env: "REGISTRAR_TLS_SELF_SIGNED", Default: "false", Help: "serve TLS with a generated self-signed certificate"},
	{Name: "base-url", Env: "REGISTRAR_BASE_URL", Help: "public base URL used in hrefs and Link headers (default: from the request)"},
	{Name: "timezone", Env: "REGISTRAR_TIMEZONE", Default: "America/New_York", Help: "district time zone, used for age and eligibility"},
	{Name: "log-level", Env: "REGISTRAR_LOG_LEVEL", Default: "info", Help: "debug, info, warn or error"},
	{Name: "token-ttl", Env: "REGISTRAR_TOKEN_TTL", Default: "1h", Help: "lifetime of access tokens issued by /oauth/token"},
	{Name: "max-body", Env: "REGISTRAR_MAX_BODY", Default: "1048576", Help: "largest JSON request body in bytes"},
	{Name: "database-url", Env: "REGISTRAR_DATABASE_URL", Help: "PostgreSQL URL (postgres://user@host/db); empty means SQLite in the data directory"},
	{Name: "database-reader-url", Env: "REGISTRAR_DATABASE_READER_URL", Help: "PostgreSQL URL of a read replica for reads"},
	{Name: "database-password", Env: "REGISTRAR_DATABASE_PASSWORD", Secret: true, Help: "PostgreSQL password"},
	{Name: "database-ca-file", Env: "REGISTRAR_DATABASE_CA_FILE", Help: "CA bundle for sslmode=verify-full"},
	{Name: "redis-addr", Env: "REGISTRAR_REDIS_ADDR", Help: "Redis HOST:PORT; empty means the in-process cache"},
	{Name: "redis-password", Env: "REGISTRAR_REDIS_PASSWORD", Secret: true, Help: "Redis AUTH token"},
	{Name: "redis-tls", Env: "REGISTRAR_REDIS_TLS", Default: "false", Help: "connect to Redis over TLS"},
	{Name: "kinesis-in", Env: "REGISTRAR_KINESIS_IN", Help: "Kinesis stream of inbound SIS change events; empty means the embedded outbox"},
	{Name: "kinesis-out", Env: "REGISTRAR_KINESIS_OUT", Help: "Kinesis stream for outbound change events"},
	{Name: "sis-client", Env: "REGISTRAR_SIS_CLIENT", Help: "API client id (the SIS) whose scope authorizes and whose name audits the events read from --kinesis-in"},
	{Name: "aws-region", Env: "REGISTRAR_AWS_REGION", Help: "AWS region for KMS and Kinesis"},
	{Name: "aws-endpoint", Env: "REGISTRAR_AWS_ENDPOINT", Help: "override AWS endpoint (emulators in tests)"},
	{Name: "kek-uri", Env: "REGISTRAR_KEK_URI", Help: "key-encryption key: aws-kms://arn:... ; empty means a local keyset file in the data directory"},
	{Name: "keyset", Env: "REGISTRAR_KEYSET", Secret: true, Help: "service keyset (signing and blind-index keys), encrypted by the KEK; empty means a file in the data directory"},
	{Name: "documents-dir", Env: "REGISTRAR_DOCUMENTS_DIR", Help: "folder for encrypted documents (default: DATA/documents)"},
	{Name: "oidc-issuer", Env: "REGISTRAR_OIDC_ISSUER", Help: "the district's OpenID Connect issuer URL"},
	{Name: "oidc-audience", Env: "REGISTRAR_OIDC_AUDIENCE", Help: "audience that OIDC tokens must carry"},
	{Name: "oidc-claim", Env: "REGISTRAR_OIDC_CLAIM", Default: "email", Help: "OIDC claim mapped to a roster user: email or username"},
	{Name: "instance-id", Env: "REGISTRAR_INSTANCE_ID", Help: "this instance's audit chain id (default: generated and kept in the data directory)"},
}

// Config holds the values after parsing. Durations and numbers are typed.
type Config struct {
	Data              string
	Addr              string
	TLSCert, TLSKey   string
	TLSSelfSigned     bool
	BaseURL           string
	Timezone          *time.Location
	TimezoneName      string
	LogLevel          string
	TokenTTL          time.Duration
	MaxBody           int64
	DatabaseURL       string
	DatabaseReaderURL string
	DatabasePassword  string
	DatabaseCAFile    string
	RedisAddr         string
	RedisPassword     string
	RedisTLS          bool
	KinesisIn         string
	KinesisOut        string
	SISClient         string
	AWSRegion         string
	AWSEndpoint       string
	KEKURI            string
	Keyset            string
	DocumentsDir      string
	OIDCIssuer        string
	OIDCAudience      string
	OIDCClaim         string
	InstanceID        string

	raw map[string]string
}

// EnvKeys lists every environment variable registrar reads, secrets with their
// *_FILE twins excluded (the infrastructure injects secrets by value).
func EnvKeys() (plain, secret []string) {
	for _, s := range Settings {
		if s.Secret {
			secret = append(secret, s.Env)
		} else {
			plain = append(plain, s.Env)
		}
	}
	return plain, secret
}

// Register adds every setting as a flag on fs. Call Load after fs.Parse. Settings
// whose default is true or false are boolean flags: --tls-self-signed alone sets it.
func Register(fs *flag.FlagSet) map[string]*string {
	vals := make(map[string]*string, len(Settings))
	for _, s := range Settings {
		help := s.Help + " (env " + s.Env + ")"
		if s.Secret {
			help += "; or " + s.Env + "_FILE"
		}
		v := new(string)
		fs.Var(&textFlag{v: v, isBool: s.Default == "true" || s.Default == "false"}, s.Name, help)
		vals[s.Name] = v
	}
	return vals
}

// textFlag keeps a flag's text for Load to interpret; boolean ones need no value.
type textFlag struct {
	v      *string
	isBool bool
}

func (f *textFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f *textFlag) Set(s string) error { *f.v = s; return nil }

func (f *textFlag) IsBoolFlag() bool { return f.isBool }

// Load resolves every setting: a flag set on the command line wins, then the
// environment (and *_FILE for secrets), then the default.
func Load(fs *flag.FlagSet, flags map[string]*string, getenv func(string) string) (*Config, error) {
	set := map[string]bool{}
	if fs != nil {
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	}
	raw := make(map[string]string, len(Settings))
	for _, s := range Settings {
		v := s.Default
		if e := getenv(s.Env); e != "" {
			v = e
		} else if s.Secret {
			if f := getenv(s.Env + "_FILE"); f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, fmt.Errorf("config: %s_FILE: %w", s.Env, err)
				}
				v = strings.TrimSpace(string(b))
			}
		}
		if p, ok := flags[s.Name]; ok && set[s.Name] {
			v = *p
		}
		raw[s.Name] = v
	}
	return fromRaw(raw)
}

func fromRaw(raw map[string]string) (*Config, error) {
	c := &Config{raw: raw}
	var errs []error
	boolOf := func(name string) bool {
		b, err := strconv.ParseBool(raw[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s: %q is not true or false", name, raw[name]))
		}
		return b
	}
	c.Data = raw["data"]
	c.Addr = raw["addr"]
	c.TLSCert, c.TLSKey = raw["tls-cert"], raw["tls-key"]
	c.TLSSelfSigned = boolOf("tls-self-signed")
	c.BaseURL = strings.TrimRight(raw["base-url"], "/")
	c.TimezoneName = raw["timezone"]
	loc, err := time.LoadLocation(c.TimezoneName)
	if err != nil {
		errs = append(errs, fmt.Errorf("--timezone: unknown time zone %q", c.TimezoneName))
		loc = time.UTC
	}
	c.Timezone = loc
	c.LogLevel = raw["log-level"]
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level: %q is not debug, info, warn or error", c.LogLevel))
	}
	if c.TokenTTL, err = time.ParseDuration(raw["token-ttl"]); err != nil || c.TokenTTL <= 0 || c.TokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--token-ttl: %q must be a duration between 1s and 24h", raw["token-ttl"]))
	}
	if c.MaxBody, err = strconv.ParseInt(raw["max-body"], 10, 64); err != nil || c.MaxBody < 1024 {
		errs = append(errs, fmt.Errorf("--max-body: %q must be a number of bytes, at least 1024", raw["max-body"]))
	}
	c.DatabaseURL = raw["database-url"]
	c.DatabaseReaderURL = raw["database-reader-url"]
	c.DatabasePassword = raw["database-password"]
	c.DatabaseCAFile = raw["database-ca-file"]
	c.RedisAddr = raw["redis-addr"]
	c.RedisPassword = raw["redis-password"]
	c.RedisTLS = boolOf("redis-tls")
	c.KinesisIn, c.KinesisOut = raw["kinesis-in"], raw["kinesis-out"]
	c.SISClient = raw["sis-client"]
	c.AWSRegion, c.AWSEndpoint = raw["aws-region"], raw["aws-endpoint"]
	c.KEKURI = raw["kek-uri"]
	c.Keyset = raw["keyset"]
	c.DocumentsDir = raw["documents-dir"]
	c.OIDCIssuer, c.OIDCAudience, c.OIDCClaim = raw["oidc-issuer"], raw["oidc-audience"], raw["oidc-claim"]
	c.InstanceID = raw["instance-id"]
	if c.Data == "" {
		errs = append(errs, errors.New("--data: must not be empty"))
	}
	if c.TLSCert != "" && c.TLSKey == "" || c.TLSCert == "" && c.TLSKey != "" {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.OIDCClaim != "email" && c.OIDCClaim != "username" {
		errs = append(errs, fmt.Errorf("--oidc-claim: %q is not email or username", c.OIDCClaim))
	}
	if c.OIDCIssuer != "" && c.OIDCAudience == "" {
		errs = append(errs, errors.New("--oidc-audience is required with --oidc-issuer"))
	}
	if c.KEKURI != "" && !strings.HasPrefix(c.KEKURI, "aws-kms://") {
		errs = append(errs, fmt.Errorf("--kek-uri: %q must start with aws-kms://", c.KEKURI))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Defaults returns the configuration with nothing set but dir as the data directory.
func Defaults(dir string) *Config {
	raw := map[string]string{}
	for _, s := range Settings {
		raw[s.Name] = s.Default
	}
	raw["data"] = dir
	c, err := fromRaw(raw)
	if err != nil {
		panic("config: defaults do not validate: " + err.Error()) // a programming error in Settings
	}
	return c
}

// ValidateListen checks the rule that plain HTTP is served only on loopback.
func (c *Config) ValidateListen() error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("--addr %q: want HOST:PORT (for example 127.0.0.1:8080)", c.Addr)
	}
	if c.TLSCert != "" || c.TLSSelfSigned {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to serve plain HTTP on %q, which is not a loopback address: student records must not cross a network unencrypted.\n"+
		"Either listen on loopback (--addr 127.0.0.1:8080, behind a TLS-terminating proxy), or give a certificate with --tls-cert FILE --tls-key FILE, or use --tls-self-signed for testing", c.Addr)
}

// String prints the configuration with secrets hidden.
func (c *Config) String() string {
	var b strings.Builder
	for _, s := range Settings {
		v := c.raw[s.Name]
		if s.Secret && v != "" {
			v = "(set)"
		}
		fmt.Fprintf(&b, "%s=%s\n", s.Env, v)
	}
	return b.String()
}
