package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// StackConfig is everything that differs between stacks (dev, prod, ...). It is read
// from the stack's Pulumi.<stack>.yaml under the "registrar:" namespace (plus
// "aws:region"), so that the example files in this folder are the tested inputs.
//
// Encryption, TLS, authentication and WAF are not in here on purpose: they are on in
// every stack and cannot be configured off.
type StackConfig struct {
	Stack  string // short stack name used in resource names, e.g. "dev"
	Region string // aws:region

	// Network.
	AZCount  int    // 2 or 3 availability zones
	VPCCIDR  string // a /16
	NATPerAZ bool   // one NAT gateway per AZ (prod) or a single one (dev)

	// Service.
	Image          string // container image pinned by digest: REPO@sha256:...
	Architecture   string // ARM64 or X86_64
	TaskCPU        int    // Fargate CPU units
	TaskMemory     int    // MiB
	DesiredCount   int    // API tasks at rest, at least 2
	MaxCount       int    // autoscaling ceiling
	SeparateWorker bool   // run `registrar worker` as a second service
	WorkerCount    int

	// Edge.
	APIDomain          string // public custom domain of the API, e.g. records.example.edu
	OriginDomain       string // TLS name the gateway uses for the internal load balancer
	CertificateARN     string // regional ACM certificate covering APIDomain and OriginDomain
	HostedZoneID       string // optional: Route 53 zone in which to create APIDomain's record
	ThrottleRateLimit  float64
	ThrottleBurstLimit int
	WAFRateLimit       int // requests per 5 minutes per client IP

	// Database.
	DBEngineVersion string // Aurora PostgreSQL version, major pinned, e.g. 16.6
	DBMinACU        float64
	DBMaxACU        float64
	DBInstances     int // 1 = writer only; 2+ = writer + readers in other AZs
	DBName          string
	DBUsername      string

	// Cache.
	CacheNodeType      string
	CacheEngineVersion string

	// Streams.
	StreamMode   string // ON_DEMAND or PROVISIONED
	StreamShards int    // for PROVISIONED

	// Environment toggles.
	DeletionProtection  bool // load balancers, database, final snapshots, secret recovery window
	Backups             bool // EFS backups and ElastiCache snapshots; Aurora keeps BackupRetentionDays
	BackupRetentionDays int  // Aurora automated backups (1-35)
	LogRetentionDays    int

	// Application settings that are not derived from resources.
	OIDCIssuer   string
	OIDCAudience string
	OIDCClaim    string
	Timezone     string
	LogLevel     string
	TokenTTL     string
	MaxBody      string

	// Operations.
	RotatorArchive          string // zip of the rotator function (infra/build-rotator.sh)
	CacheTokenRotationDays  int    // Redis AUTH token rotation period
	AlarmEmail              string
	KeyOperatorARNs         []string // principals allowed to wrap and unwrap the service keyset with the KEK
	ManageAPIGatewayAccount bool     // set the region's API Gateway CloudWatch role (one per account and region)
}

// Getter returns a configuration value by its full key ("registrar:azCount").
type Getter func(key string) (string, bool)

// namespace is the Pulumi project name, the prefix of every key of ours.
const namespace = "registrar"

var (
	digestRef = regexp.MustCompile(`^[a-z0-9.\-]+(:[0-9]+)?/[a-z0-9._/\-]+@sha256:[a-f0-9]{64}$`)
	acmARN    = regexp.MustCompile(`^arn:aws[a-z\-]*:acm:[a-z0-9\-]+:[0-9]{12}:certificate/[A-Za-z0-9\-]+$`)
	iamARN    = regexp.MustCompile(`^arn:aws[a-z\-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/\-]+$`)
	hostname  = regexp.MustCompile(`^([a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,}$`)
	stackName = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}$`)
)

// LoadStackConfig reads and validates the stack configuration. Unknown keys in our
// namespace are errors, so a typo in Pulumi.<stack>.yaml does not silently fall back to
// a default.
func LoadStackConfig(stack string, get Getter, keys []string) (StackConfig, error) {
	c := StackConfig{
		Stack:                   stack,
		AZCount:                 2,
		VPCCIDR:                 "10.40.0.0/16",
		Architecture:            "ARM64",
		TaskCPU:                 512,
		TaskMemory:              1024,
		DesiredCount:            2,
		MaxCount:                6,
		WorkerCount:             1,
		ThrottleRateLimit:       200,
		ThrottleBurstLimit:      400,
		WAFRateLimit:            2000,
		DBEngineVersion:         "16.6",
		DBMinACU:                0.5,
		DBMaxACU:                8,
		DBInstances:             2,
		DBName:                  "registrar",
		DBUsername:              "registrar_owner",
		CacheNodeType:           "cache.t4g.small",
		CacheEngineVersion:      "7.1",
		StreamMode:              "ON_DEMAND",
		StreamShards:            1,
		DeletionProtection:      true,
		Backups:                 true,
		BackupRetentionDays:     35,
		LogRetentionDays:        365,
		OIDCClaim:               settingDefault("REGISTRAR_OIDC_CLAIM"),
		Timezone:                settingDefault("REGISTRAR_TIMEZONE"),
		LogLevel:                settingDefault("REGISTRAR_LOG_LEVEL"),
		TokenTTL:                settingDefault("REGISTRAR_TOKEN_TTL"),
		MaxBody:                 settingDefault("REGISTRAR_MAX_BODY"),
		ManageAPIGatewayAccount: true,
		RotatorArchive:          "build/rotator.zip",
		CacheTokenRotationDays:  30,
	}
	var errs []error
	str := func(key string, dst *string) {
		if v, ok := get(namespace + ":" + key); ok {
			*dst = v
		}
	}
	integer := func(key string, dst *int) {
		if v, ok := get(namespace + ":" + key); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %q is not an integer", namespace, key, v))
				return
			}
			*dst = n
		}
	}
	float := func(key string, dst *float64) {
		if v, ok := get(namespace + ":" + key); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %q is not a number", namespace, key, v))
				return
			}
			*dst = f
		}
	}
	boolean := func(key string, dst *bool) {
		if v, ok := get(namespace + ":" + key); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %q is not true or false", namespace, key, v))
				return
			}
			*dst = b
		}
	}
	list := func(key string, dst *[]string) {
		if v, ok := get(namespace + ":" + key); ok {
			if err := json.Unmarshal([]byte(v), dst); err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: want a list of strings: %w", namespace, key, err))
			}
		}
	}

	if v, ok := get("aws:region"); ok {
		c.Region = v
	}
	fields := map[string]func(string){
		"azCount":                 func(k string) { integer(k, &c.AZCount) },
		"vpcCidr":                 func(k string) { str(k, &c.VPCCIDR) },
		"natPerAz":                func(k string) { boolean(k, &c.NATPerAZ) },
		"image":                   func(k string) { str(k, &c.Image) },
		"architecture":            func(k string) { str(k, &c.Architecture) },
		"taskCpu":                 func(k string) { integer(k, &c.TaskCPU) },
		"taskMemory":              func(k string) { integer(k, &c.TaskMemory) },
		"desiredCount":            func(k string) { integer(k, &c.DesiredCount) },
		"maxCount":                func(k string) { integer(k, &c.MaxCount) },
		"separateWorker":          func(k string) { boolean(k, &c.SeparateWorker) },
		"workerCount":             func(k string) { integer(k, &c.WorkerCount) },
		"apiDomain":               func(k string) { str(k, &c.APIDomain) },
		"originDomain":            func(k string) { str(k, &c.OriginDomain) },
		"certificateArn":          func(k string) { str(k, &c.CertificateARN) },
		"hostedZoneId":            func(k string) { str(k, &c.HostedZoneID) },
		"throttleRateLimit":       func(k string) { float(k, &c.ThrottleRateLimit) },
		"throttleBurstLimit":      func(k string) { integer(k, &c.ThrottleBurstLimit) },
		"wafRateLimit":            func(k string) { integer(k, &c.WAFRateLimit) },
		"dbEngineVersion":         func(k string) { str(k, &c.DBEngineVersion) },
		"dbMinAcu":                func(k string) { float(k, &c.DBMinACU) },
		"dbMaxAcu":                func(k string) { float(k, &c.DBMaxACU) },
		"dbInstances":             func(k string) { integer(k, &c.DBInstances) },
		"dbName":                  func(k string) { str(k, &c.DBName) },
		"dbUsername":              func(k string) { str(k, &c.DBUsername) },
		"cacheNodeType":           func(k string) { str(k, &c.CacheNodeType) },
		"cacheEngineVersion":      func(k string) { str(k, &c.CacheEngineVersion) },
		"streamMode":              func(k string) { str(k, &c.StreamMode) },
		"streamShards":            func(k string) { integer(k, &c.StreamShards) },
		"deletionProtection":      func(k string) { boolean(k, &c.DeletionProtection) },
		"backups":                 func(k string) { boolean(k, &c.Backups) },
		"backupRetentionDays":     func(k string) { integer(k, &c.BackupRetentionDays) },
		"logRetentionDays":        func(k string) { integer(k, &c.LogRetentionDays) },
		"oidcIssuer":              func(k string) { str(k, &c.OIDCIssuer) },
		"oidcAudience":            func(k string) { str(k, &c.OIDCAudience) },
		"oidcClaim":               func(k string) { str(k, &c.OIDCClaim) },
		"timezone":                func(k string) { str(k, &c.Timezone) },
		"logLevel":                func(k string) { str(k, &c.LogLevel) },
		"tokenTtl":                func(k string) { str(k, &c.TokenTTL) },
		"maxBody":                 func(k string) { str(k, &c.MaxBody) },
		"alarmEmail":              func(k string) { str(k, &c.AlarmEmail) },
		"rotatorArchive":          func(k string) { str(k, &c.RotatorArchive) },
		"cacheTokenRotationDays":  func(k string) { integer(k, &c.CacheTokenRotationDays) },
		"keyOperatorArns":         func(k string) { list(k, &c.KeyOperatorARNs) },
		"manageApiGatewayAccount": func(k string) { boolean(k, &c.ManageAPIGatewayAccount) },
	}
	for _, k := range keys {
		name, ok := strings.CutPrefix(k, namespace+":")
		if !ok {
			continue
		}
		if _, known := fields[name]; !known {
			errs = append(errs, fmt.Errorf("%s: unknown configuration key", k))
		}
	}
	for name, read := range fields {
		read(name)
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// Validate checks the values across fields.
func (c StackConfig) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !stackName.MatchString(c.Stack) {
		bad("stack name %q: want 2-12 lowercase letters and digits (it is part of resource names)", c.Stack)
	}
	if c.Region == "" {
		bad("aws:region is required")
	}
	if c.AZCount < 2 || c.AZCount > 3 {
		bad("registrar:azCount: %d, want 2 or 3", c.AZCount)
	}
	if _, err := splitCIDR(c.VPCCIDR); err != nil {
		bad("registrar:vpcCidr: %v", err)
	}
	if !digestRef.MatchString(c.Image) {
		bad("registrar:image: %q must be pinned by digest (REGISTRY/REPO@sha256:<64 hex>)", c.Image)
	}
	if c.Architecture != "ARM64" && c.Architecture != "X86_64" {
		bad("registrar:architecture: %q, want ARM64 or X86_64", c.Architecture)
	}
	if c.DesiredCount < 2 {
		bad("registrar:desiredCount: %d, want at least 2 so that the API runs in two AZs", c.DesiredCount)
	}
	if c.MaxCount < c.DesiredCount {
		bad("registrar:maxCount: %d is less than desiredCount %d", c.MaxCount, c.DesiredCount)
	}
	if c.SeparateWorker && c.WorkerCount < 1 {
		bad("registrar:workerCount: %d, want at least 1 with separateWorker", c.WorkerCount)
	}
	for key, v := range map[string]string{"apiDomain": c.APIDomain, "originDomain": c.OriginDomain} {
		if !hostname.MatchString(v) {
			bad("registrar:%s: %q is not a DNS name", key, v)
		}
	}
	if c.APIDomain == c.OriginDomain && c.APIDomain != "" {
		bad("registrar:originDomain must differ from apiDomain (the origin is internal)")
	}
	if !acmARN.MatchString(c.CertificateARN) {
		bad("registrar:certificateArn: %q is not an ACM certificate ARN", c.CertificateARN)
	}
	if c.ThrottleRateLimit <= 0 || c.ThrottleBurstLimit <= 0 {
		bad("registrar:throttleRateLimit and throttleBurstLimit must be positive")
	}
	if c.WAFRateLimit < 10 {
		bad("registrar:wafRateLimit: %d, want at least 10 (the WAF minimum)", c.WAFRateLimit)
	}
	if _, err := pgMajor(c.DBEngineVersion); err != nil {
		bad("registrar:dbEngineVersion: %v", err)
	}
	if c.DBMinACU < 0.5 || c.DBMaxACU < c.DBMinACU || c.DBMaxACU > 256 {
		bad("registrar:dbMinAcu/dbMaxAcu: %v-%v, want 0.5 <= min <= max <= 256", c.DBMinACU, c.DBMaxACU)
	}
	if c.DBInstances < 1 || c.DBInstances > c.AZCount+1 {
		bad("registrar:dbInstances: %d, want 1..%d", c.DBInstances, c.AZCount+1)
	}
	switch strings.ToLower(c.DBUsername) {
	case "", "postgres", "admin", "root", "rdsadmin", "administrator":
		bad("registrar:dbUsername: %q, want a custom administrator name", c.DBUsername)
	}
	if !strings.HasPrefix(c.CacheEngineVersion, "7.") {
		bad("registrar:cacheEngineVersion: %q, want an explicit Redis OSS 7.x version", c.CacheEngineVersion)
	}
	switch c.StreamMode {
	case "ON_DEMAND":
	case "PROVISIONED":
		if c.StreamShards < 1 {
			bad("registrar:streamShards: %d, want at least 1", c.StreamShards)
		}
	default:
		bad("registrar:streamMode: %q, want ON_DEMAND or PROVISIONED", c.StreamMode)
	}
	if c.BackupRetentionDays < 1 || c.BackupRetentionDays > 35 {
		bad("registrar:backupRetentionDays: %d, want 1..35", c.BackupRetentionDays)
	}
	if !validRetention[c.LogRetentionDays] {
		bad("registrar:logRetentionDays: %d is not a CloudWatch Logs retention value", c.LogRetentionDays)
	}
	if !strings.HasPrefix(c.OIDCIssuer, "https://") {
		bad("registrar:oidcIssuer: %q, want an https:// issuer URL", c.OIDCIssuer)
	}
	if c.OIDCAudience == "" {
		bad("registrar:oidcAudience is required")
	}
	if c.CacheTokenRotationDays < 1 || c.CacheTokenRotationDays > 90 {
		bad("registrar:cacheTokenRotationDays: %d, want 1..90", c.CacheTokenRotationDays)
	}
	if c.RotatorArchive == "" {
		bad("registrar:rotatorArchive is required (build it with infra/build-rotator.sh)")
	}
	for _, a := range c.KeyOperatorARNs {
		if !iamARN.MatchString(a) {
			bad("registrar:keyOperatorArns: %q is not an IAM role or user ARN", a)
		}
	}
	return errors.Join(errs...)
}

// validRetention is the set of values CloudWatch Logs accepts (0, "never expire", is
// deliberately absent).
var validRetention = map[int]bool{1: true, 3: true, 5: true, 7: true, 14: true, 30: true, 60: true, 90: true,
	120: true, 150: true, 180: true, 365: true, 400: true, 545: true, 731: true, 1096: true, 1827: true,
	2192: true, 2557: true, 2922: true, 3288: true, 3653: true}

// pgMajor returns the major version of an Aurora PostgreSQL engine version, which must
// name a minor too, so that the version is pinned.
func pgMajor(v string) (string, error) {
	major, minor, ok := strings.Cut(v, ".")
	if !ok || major == "" || minor == "" {
		return "", fmt.Errorf("%q: want MAJOR.MINOR, e.g. 16.6", v)
	}
	if n, err := strconv.Atoi(major); err != nil || n < 13 {
		return "", fmt.Errorf("%q: want Aurora PostgreSQL 13 or later", v)
	}
	return major, nil
}
