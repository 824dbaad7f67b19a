package main

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"

	"registrar/config"
)

// Paths and identities inside the container image; the Dockerfile at the repository
// root creates the same ones (a test reads it to keep the two in step).
const (
	containerName   = "registrar"
	containerUID    = 65532 // distroless "nonroot"
	listenPort      = 8443
	dataDir         = "/var/lib/registrar" // ephemeral task volume: scratch, never records
	tmpDir          = "/tmp"
	documentsDir    = "/documents" // EFS access point
	databaseCAFile  = "/etc/registrar/rds-global-bundle.pem"
	postgresPort    = 5432
	redisPort       = 6379
	nfsPort         = 2049
	httpsPort       = 443
	healthCheckPath = "/healthz"
	accessPointRoot = "/documents" // root directory of the EFS access point
)

// excludedSettings are the registrar settings that the deployment deliberately leaves
// unset, each with the reason. Every other setting in config.Settings must be given a
// value by taskSettings; a setting added to config without a decision here or there
// makes Deploy fail, so the task definition cannot silently drift from what the binary
// reads.
var excludedSettings = map[string]string{
	"REGISTRAR_TLS_CERT":     "the task serves TLS with a self-signed certificate (REGISTRAR_TLS_SELF_SIGNED); the ALB does not verify target certificates and the public certificate lives in ACM",
	"REGISTRAR_TLS_KEY":      "goes with REGISTRAR_TLS_CERT",
	"REGISTRAR_AWS_ENDPOINT": "only for emulators in tests; on AWS the SDK's regional endpoints (reached through VPC endpoints) are right",
	"REGISTRAR_SIS_CLIENT":   "the SIS's API client is registered after the first deploy (registrar clients create); until it is set, events on the inbound stream wait there, nothing is lost (docs/stream.md)",
	"REGISTRAR_INSTANCE_ID":  "each task generates its own audit chain id in its data directory; tasks are disposable, so each task is its own chain",
}

// taskResources are the resolved resource attributes the task's settings refer to.
type taskResources struct {
	DBWriterHost    string
	DBReaderHost    string
	RedisHost       string
	StreamIn        string
	StreamOut       string
	KEKARN          string
	DBSecretARN     string // RDS-managed master user secret (JSON with "password")
	RedisSecretARN  string
	KeysetSecretARN string
}

// taskSettings returns the container's plain environment and its secrets (env name ->
// Secrets Manager valueFrom). It fails if config.Settings has a setting that is neither
// given a value here nor listed in excludedSettings.
func taskSettings(cfg StackConfig, r taskResources) (env, secrets map[string]string, err error) {
	dbURL := func(host string) string {
		u := url.URL{
			Scheme:   "postgres",
			User:     url.User(cfg.DBUsername),
			Host:     host + ":" + strconv.Itoa(postgresPort),
			Path:     "/" + cfg.DBName,
			RawQuery: "sslmode=verify-full",
		}
		return u.String()
	}
	env = map[string]string{
		"REGISTRAR_DATA":                dataDir,
		"REGISTRAR_ADDR":                "0.0.0.0:" + strconv.Itoa(listenPort),
		"REGISTRAR_TLS_SELF_SIGNED":     "true",
		"REGISTRAR_BASE_URL":            "https://" + cfg.APIDomain,
		"REGISTRAR_TIMEZONE":            cfg.Timezone,
		"REGISTRAR_LOG_LEVEL":           cfg.LogLevel,
		"REGISTRAR_TOKEN_TTL":           cfg.TokenTTL,
		"REGISTRAR_MAX_BODY":            cfg.MaxBody,
		"REGISTRAR_DATABASE_URL":        dbURL(r.DBWriterHost),
		"REGISTRAR_DATABASE_READER_URL": dbURL(r.DBReaderHost),
		"REGISTRAR_DATABASE_CA_FILE":    databaseCAFile,
		"REGISTRAR_REDIS_ADDR":          r.RedisHost + ":" + strconv.Itoa(redisPort),
		"REGISTRAR_REDIS_TLS":           "true",
		"REGISTRAR_KINESIS_IN":          r.StreamIn,
		"REGISTRAR_KINESIS_OUT":         r.StreamOut,
		"REGISTRAR_AWS_REGION":          cfg.Region,
		"REGISTRAR_KEK_URI":             "aws-kms://" + r.KEKARN,
		"REGISTRAR_DOCUMENTS_DIR":       documentsDir,
		"REGISTRAR_OIDC_ISSUER":         cfg.OIDCIssuer,
		"REGISTRAR_OIDC_AUDIENCE":       cfg.OIDCAudience,
		"REGISTRAR_OIDC_CLAIM":          cfg.OIDCClaim,
	}
	secrets = map[string]string{
		// ECS reads one JSON key of a secret with ARN:KEY:VERSION-STAGE:VERSION-ID.
		"REGISTRAR_DATABASE_PASSWORD": r.DBSecretARN + ":password::",
		"REGISTRAR_REDIS_PASSWORD":    r.RedisSecretARN,
		"REGISTRAR_KEYSET":            r.KeysetSecretARN,
	}
	return env, secrets, checkSettingsCovered(env, secrets)
}

// checkSettingsCovered compares the decisions with the binary's configuration table.
func checkSettingsCovered(env, secrets map[string]string) error {
	var errs []error
	known := map[string]bool{}
	for _, s := range config.Settings {
		known[s.Env] = true
		_, inEnv := env[s.Env]
		_, inSecrets := secrets[s.Env]
		_, excluded := excludedSettings[s.Env]
		switch {
		case excluded && (inEnv || inSecrets):
			errs = append(errs, fmt.Errorf("%s is both set and in excludedSettings", s.Env))
		case s.Secret && inEnv:
			errs = append(errs, fmt.Errorf("%s is a secret but is set as a plain environment variable", s.Env))
		case !s.Secret && inSecrets:
			errs = append(errs, fmt.Errorf("%s is not a secret in registrar's config but is injected as one", s.Env))
		case !inEnv && !inSecrets && !excluded:
			errs = append(errs, fmt.Errorf("%s is read by registrar but the deployment has no decision for it: set it in taskSettings or add it to excludedSettings with a reason", s.Env))
		}
	}
	var unknown []string
	for _, m := range []map[string]string{env, secrets, excludedSettings} {
		for k := range m {
			if !known[k] {
				unknown = append(unknown, k)
			}
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("%s is not a registrar setting (removed from config?)", k))
	}
	return errors.Join(errs...)
}

// settingDefault returns the binary's default for a setting, so that stack defaults
// follow the service's instead of restating them.
func settingDefault(env string) string {
	for _, s := range config.Settings {
		if s.Env == env {
			return s.Default
		}
	}
	panic("infra: no registrar setting " + env) // a programming error in this package
}
