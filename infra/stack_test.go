package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestProdExampleTurnsOnEveryToggle(t *testing.T) {
	c := loadExample(t, "prod")
	for what, ok := range map[string]bool{
		"deletion protection (ELB.6, RDS.7)":               c.DeletionProtection,
		"backups (EFS.2, ElastiCache.1)":                   c.Backups,
		"Aurora backups of 30 days or more":                c.BackupRetentionDays >= 30,
		"a writer and a reader (RDS.15)":                   c.DBInstances >= 2,
		"a NAT gateway per AZ":                             c.NATPerAZ,
		"a year of logs (CloudWatch.16's 365-day minimum)": c.LogRetentionDays >= 365,
		"at least two API tasks":                           c.DesiredCount >= 2,
	} {
		if !ok {
			t.Errorf("prod example: %s is off", what)
		}
	}
	s := deployExample(t, "prod")
	if got := s.named(t, tDBCluster, "db").num("backupRetentionPeriod"); got < 30 {
		t.Errorf("prod Aurora backup retention %v days", got)
	}
	if s.named(t, tDBCluster, "db").flag("skipFinalSnapshot") {
		t.Error("prod skips the final snapshot")
	}
}

func TestDevExampleIsCheapButAsSecure(t *testing.T) {
	c := loadExample(t, "dev")
	if c.DeletionProtection || c.NATPerAZ || c.DBInstances != 1 || c.Backups {
		t.Errorf("dev example is not the cheap, disposable one: %+v", c)
	}
	// What stays on everywhere is not configurable at all: the controls run on dev too.
}

func TestLoadStackConfigRefusesMistakes(t *testing.T) {
	good := map[string]string{}
	b, err := os.ReadFile("Pulumi.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok && !strings.HasPrefix(k, "#") && strings.Contains(k, ":") {
			good[k] = strings.Trim(v, `"`)
		}
	}
	load := func(m map[string]string) error {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		_, err := LoadStackConfig("dev", func(k string) (string, bool) { v, ok := m[k]; return v, ok }, keys)
		return err
	}
	if err := load(good); err != nil {
		t.Fatalf("the unchanged dev example is refused: %v", err)
	}
	for name, change := range map[string]func(m map[string]string){
		"an unknown key (a typo)": func(m map[string]string) { m["registrar:deletionProtecton"] = "true" },
		"an image by tag, not digest": func(m map[string]string) {
			m["registrar:image"] = "111111111111.dkr.ecr.us-east-1.amazonaws.com/registrar:latest"
		},
		"a single API task":          func(m map[string]string) { m["registrar:desiredCount"] = "1" },
		"a plain-http OIDC issuer":   func(m map[string]string) { m["registrar:oidcIssuer"] = "http://login.example.edu" },
		"the default postgres user":  func(m map[string]string) { m["registrar:dbUsername"] = "postgres" },
		"an unpinned engine version": func(m map[string]string) { m["registrar:dbEngineVersion"] = "16" },
		"logs kept forever (0)":      func(m map[string]string) { m["registrar:logRetentionDays"] = "0" },
		"not a certificate ARN": func(m map[string]string) {
			m["registrar:certificateArn"] = "arn:aws:iam::111111111111:server-certificate/x"
		},
		"origin equal to the public domain": func(m map[string]string) { m["registrar:originDomain"] = m["registrar:apiDomain"] },
		"a token rotation beyond 90 days":   func(m map[string]string) { m["registrar:cacheTokenRotationDays"] = "120" },
		"a non-number":                      func(m map[string]string) { m["registrar:azCount"] = "two" },
		"one AZ":                            func(m map[string]string) { m["registrar:azCount"] = "1" },
		"a key operator that is not an ARN": func(m map[string]string) { m["registrar:keyOperatorArns"] = `["alice"]` },
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		change(m)
		if err := load(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGatewayReachesOnlyTheInternalOriginOverTLS(t *testing.T) {
	for _, name := range examples {
		t.Run(name, func(t *testing.T) {
			s := deployExample(t, name)
			api := s.named(t, tRestAPI, "api")
			if !api.flag("disableExecuteApiEndpoint") || path(api.In, "endpointConfiguration.types") != "REGIONAL" {
				t.Errorf("REST API: execute-api endpoint disabled=%v, endpoint %v", api.flag("disableExecuteApiEndpoint"), path(api.In, "endpointConfiguration"))
			}
			dom := s.named(t, tDomain, "api-domain")
			if dom.str("securityPolicy") != "TLS_1_2" || dom.str("domainName") != s.Cfg.APIDomain || dom.str("regionalCertificateArn") != s.Cfg.CertificateARN {
				t.Errorf("custom domain: %v", dom.In)
			}
			methods := s.of(tMethod)
			if len(methods) != 2 {
				t.Fatalf("%d methods, want ANY / and ANY /{proxy+}", len(methods))
			}
			for _, m := range methods {
				if m.str("httpMethod") != "ANY" || m.str("authorization") != "NONE" {
					t.Errorf("method %s: %s with authorization %s", m.Name, m.str("httpMethod"), m.str("authorization"))
				}
			}
			for _, in := range s.of(tIntegration) {
				if in.str("type") != "HTTP_PROXY" || !strings.HasPrefix(in.str("uri"), "https://"+s.Cfg.OriginDomain+"/") {
					t.Errorf("integration %s: %s %s", in.Name, in.str("type"), in.str("uri"))
				}
				if path(in.In, "tlsConfig.insecureSkipVerification") == true {
					t.Errorf("integration %s skips certificate verification", in.Name)
				}
			}
			if got := s.named(t, tIntegration, "api-integration-proxy").str("uri"); got != "https://"+s.Cfg.OriginDomain+"/{proxy}" {
				t.Errorf("proxy integration uri %q", got)
			}
			ms := s.named(t, tMethodSettings, "api-method-settings")
			if path(ms.In, "settings.throttlingRateLimit") != s.Cfg.ThrottleRateLimit || path(ms.In, "settings.throttlingBurstLimit") != float64(s.Cfg.ThrottleBurstLimit) {
				t.Errorf("throttling: %v", ms.In["settings"])
			}
			st := s.named(t, tStage, "api-stage")
			lg := s.byID(path(st.In, "accessLogSettings.destinationArn").(string))
			if lg == nil || lg.str("kmsKeyId") == "" {
				t.Errorf("access logs not to an encrypted log group: %v", st.In["accessLogSettings"])
			}
			if strings.Contains(path(st.In, "accessLogSettings.format").(string), "querystring") {
				t.Error("access logs include query strings")
			}
			execLogs := s.named(t, tLogGroup, "lg-apigw-execution")
			if execLogs.str("name") != "API-Gateway-Execution-Logs_a1b2c3d4e5/"+stageName {
				t.Errorf("execution log group %q is not the one API Gateway writes to", execLogs.str("name"))
			}
			dep := s.named(t, tDeployment, "api-deployment")
			hash, _ := routesHash(s.Cfg.OriginDomain)
			if path(dep.In, "triggers.redeployment") != hash {
				t.Errorf("deployment trigger %v, want the routes hash", dep.In["triggers"])
			}
		})
	}
	t.Run("the deployment changes when the routes or the origin change", func(t *testing.T) {
		a, _ := routesHash("origin.example.edu")
		b, _ := routesHash("origin2.example.edu")
		saved := gatewayRoutes
		defer func() { gatewayRoutes = saved }()
		gatewayRoutes = append(append(gatewayRoutes[:0:0], saved...), struct{ Path, Method, Target string }{"/extra", "GET", "/extra"})
		c, _ := routesHash("origin.example.edu")
		if a == b || a == c {
			t.Errorf("hash did not change: %s %s %s", a, b, c)
		}
	})
}

func TestWAFRules(t *testing.T) {
	for _, name := range examples {
		s := deployExample(t, name)
		acl := s.named(t, tWebACL, "waf")
		if acl.str("scope") != "REGIONAL" || path(acl.In, "defaultAction.allow") == nil {
			t.Errorf("%s: web ACL scope %q default %v", name, acl.str("scope"), acl.In["defaultAction"])
		}
		got := map[string]bool{}
		for _, r := range acl.arr("rules") {
			if g, _ := path(r, "statement.managedRuleGroupStatement.name").(string); g != "" {
				got[g] = path(r, "overrideAction.none") != nil
			}
			if lim, _ := path(r, "statement.rateBasedStatement.limit").(float64); lim > 0 {
				got["rate"] = lim == float64(s.Cfg.WAFRateLimit) && path(r, "action.block") != nil
			}
		}
		for _, want := range []string{"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesSQLiRuleSet", "rate"} {
			if !got[want] {
				t.Errorf("%s: rule %s missing or not enforcing", name, want)
			}
		}
		logging := s.named(t, tWebACLLogging, "waf-logging")
		var redacted []string
		for _, f := range logging.arr("redactedFields") {
			if h, _ := path(f, "singleHeader.name").(string); h != "" {
				redacted = append(redacted, h)
			}
		}
		if !contains(redacted, "authorization") {
			t.Errorf("%s: WAF logs keep the Authorization header", name)
		}
	}
}

func TestECSServiceShape(t *testing.T) {
	for _, name := range examples {
		t.Run(name, func(t *testing.T) {
			s := deployExample(t, name)
			api := s.named(t, tService, "service-serve")
			if api.num("desiredCount") < 2 {
				t.Errorf("API desired count %v", api.num("desiredCount"))
			}
			azs := map[string]bool{}
			for _, id := range path(api.In, "networkConfiguration.subnets").([]any) {
				sub := s.byID(id.(string))
				if sub == nil || path(sub.In, "tags.tier") != "app" {
					t.Errorf("task subnet %v is not a private app subnet", id)
					continue
				}
				azs[sub.str("availabilityZone")] = true
			}
			if len(azs) < 2 {
				t.Errorf("tasks in %d AZs", len(azs))
			}
			if path(api.In, "deploymentCircuitBreaker.enable") != true || path(api.In, "deploymentCircuitBreaker.rollback") != true {
				t.Errorf("circuit breaker %v", api.In["deploymentCircuitBreaker"])
			}
			if api.flag("enableExecuteCommand") {
				t.Error("ECS Exec is on")
			}
			if path(api.In, "loadBalancers.0.containerPort") != float64(listenPort) {
				t.Errorf("load balancer %v", api.In["loadBalancers"])
			}
			tg := s.named(t, tTargetGroup, "tg-tasks")
			if tg.str("protocol") != "HTTPS" || path(tg.In, "healthCheck.path") != healthCheckPath || path(tg.In, "healthCheck.protocol") != "HTTPS" {
				t.Errorf("target group: %s health %v", tg.str("protocol"), tg.In["healthCheck"])
			}
			worker := s.byName(tService, "service-worker")
			if (worker != nil) != s.Cfg.SeparateWorker {
				t.Errorf("worker service present=%v, separateWorker=%v", worker != nil, s.Cfg.SeparateWorker)
			}

			for _, td := range s.of(tTaskDef) {
				c, err := td.container()
				if err != nil {
					t.Fatal(err)
				}
				if c["image"] != s.Cfg.Image || !strings.Contains(s.Cfg.Image, "@sha256:") {
					t.Errorf("%s: image %v is not the digest-pinned one", td.Name, c["image"])
				}
				if c["user"] != "65532:65532" {
					t.Errorf("%s: user %v", td.Name, c["user"])
				}
				want := map[string]string{"serve": "task-serve", "worker": "task-worker"}
				if cmd := c["command"].([]any); len(cmd) != 1 || want[cmd[0].(string)] != td.Name {
					t.Errorf("%s: command %v", td.Name, cmd)
				}
				if drop := path(c, "linuxParameters.capabilities.drop"); drop == nil || drop.([]any)[0] != "ALL" {
					t.Errorf("%s: capabilities not dropped", td.Name)
				}
				vols := map[string]any{}
				for _, v := range td.arr("volumes") {
					vols[path(v, "name").(string)] = v
				}
				docs := vols["documents"]
				if path(docs, "efsVolumeConfiguration.transitEncryption") != "ENABLED" ||
					path(docs, "efsVolumeConfiguration.authorizationConfig.iam") != "ENABLED" ||
					path(docs, "efsVolumeConfiguration.authorizationConfig.accessPointId") != s.named(t, tAccessPoint, "files-ap").ID {
					t.Errorf("%s: documents volume %v", td.Name, docs)
				}
				for _, scratch := range []string{"data", "tmp"} {
					if v, ok := vols[scratch]; !ok || path(v, "hostPath") != nil || path(v, "efsVolumeConfiguration") != nil {
						t.Errorf("%s: %s is not a task-local volume: %v", td.Name, scratch, v)
					}
				}
				if td.str("cpu") == "" || td.str("memory") == "" || path(td.In, "runtimePlatform.cpuArchitecture") != s.Cfg.Architecture {
					t.Errorf("%s: cpu %s memory %s platform %v", td.Name, td.str("cpu"), td.str("memory"), td.In["runtimePlatform"])
				}
			}

			target := s.named(t, tScalingTarget, "scaling-target")
			if target.num("minCapacity") != float64(s.Cfg.DesiredCount) || target.num("maxCapacity") != float64(s.Cfg.MaxCount) {
				t.Errorf("scaling %v-%v", target.num("minCapacity"), target.num("maxCapacity"))
			}
			metrics := map[string]string{}
			for _, p := range s.of(tScalingPolicy) {
				m, _ := path(p.In, "targetTrackingScalingPolicyConfiguration.predefinedMetricSpecification.predefinedMetricType").(string)
				label, _ := path(p.In, "targetTrackingScalingPolicyConfiguration.predefinedMetricSpecification.resourceLabel").(string)
				metrics[m] = label
			}
			if _, ok := metrics["ECSServiceAverageCPUUtilization"]; !ok {
				t.Error("no CPU scaling")
			}
			if !regexp.MustCompile(`^app/[^/]+/[0-9]+/targetgroup/[^/]+/[0-9]+$`).MatchString(metrics["ALBRequestCountPerTarget"]) {
				t.Errorf("request-count scaling label %q", metrics["ALBRequestCountPerTarget"])
			}
		})
	}
}

func TestAlarms(t *testing.T) {
	s := deployExample(t, "prod")
	got := map[string]bool{}
	for _, a := range s.of(tAlarm) {
		got[a.str("metricName")] = true
		if len(a.arr("alarmActions")) != 1 || a.arr("alarmActions")[0] != s.named(t, tSNSTopic, "alarms").outStr("arn") {
			t.Errorf("alarm %s does not notify the topic", a.Name)
		}
	}
	for _, m := range []string{"5XXError", "Latency", "GetRecords.IteratorAgeMilliseconds", "CPUUtilization", "FreeLocalStorage"} {
		if !got[m] {
			t.Errorf("no alarm on %s", m)
		}
	}
}

func TestRotatorRoleGrantsOnlyRotation(t *testing.T) {
	for _, name := range examples {
		s := deployExample(t, name)
		got := grants(t, s, "rotator-policy")
		secret := s.named(t, tSecret, "secret-redis-auth").outStr("arn")
		want := map[string]bool{
			"secretsmanager:GetRandomPassword *":                                                          true,
			"kms:Decrypt " + s.keyARN("secrets"):                                                          true,
			"kms:GenerateDataKey " + s.keyARN("secrets"):                                                  true,
			"logs:CreateLogStream " + s.named(t, tLogGroup, "lg-rotator").outStr("arn") + ":log-stream:*": true,
			"logs:PutLogEvents " + s.named(t, tLogGroup, "lg-rotator").outStr("arn") + ":log-stream:*":    true,
		}
		for _, a := range []string{"DescribeSecret", "GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage"} {
			want["secretsmanager:"+a+" "+secret] = true
		}
		cache := s.named(t, tCache, "cache").outStr("arn")
		want["elasticache:DescribeReplicationGroups "+cache] = true
		want["elasticache:ModifyReplicationGroup "+cache] = true
		want["ecs:UpdateService arn:aws:ecs:us-east-1:123456789012:service/registrar-"+name+"-cluster/registrar-"+name+"-serve"] = true
		if s.Cfg.SeparateWorker {
			want["ecs:UpdateService arn:aws:ecs:us-east-1:123456789012:service/registrar-"+name+"-cluster/registrar-"+name+"-worker"] = true
		}
		compareGrants(t, got, want)
	}
}

func TestDockerfileMatchesTheTask(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	script, err := os.ReadFile("check-binary.sh")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindStringSubmatch(string(gomod))
	for what, re := range map[string]string{
		"a static build":                   `CGO_ENABLED=0`,
		"the service's Go version":         `ARG GO_VERSION=` + regexp.QuoteMeta(goVersion[1]),
		"a distroless static nonroot base": `(?m)^FROM gcr\.io/distroless/static[a-z0-9-]*:nonroot$`,
		"the task's user":                  `(?m)^USER 65532:65532$`,
		"the data mount point":             regexp.QuoteMeta(dataDir),
		"the documents mount point":        `/out/writable` + regexp.QuoteMeta(documentsDir),
		"the RDS CA bundle at the task's path": regexp.QuoteMeta(strings.TrimPrefix(databaseCAFile, "/etc/registrar/")) +
			`(.|\n)*COPY --from=build /out/etc/registrar/ /etc/registrar/`,
		"the listen port":      `(?m)^EXPOSE 8443$`,
		"serve as the default": `(?m)^CMD \["serve"\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(df) {
			t.Errorf("Dockerfile lacks %s (%s)", what, re)
		}
	}
	// CI builds the binary with check-binary.sh; it must be the image's build.
	build := regexp.MustCompile(`go build -trimpath -buildvcs=false -tags timetzdata -ldflags "-s -w -X main.version=[^"]+" -o \S+ ./cmd/registrar`)
	if len(build.FindAllString(df, -1)) != 1 || len(build.FindAllString(string(script), -1)) != 1 {
		t.Error("the Dockerfile and check-binary.sh must build registrar with the same command")
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{".git", "infra", "**/*.pem", "**/*.key", "**/registrar-data*"} {
		if !contains(strings.Split(string(ignore), "\n"), must) {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
}
