package main

import (
	"strings"
	"testing"

	"registrar/config"
)

// control is one AWS Foundational Security Best Practices control (or, for
// "RDS.force_ssl", a requirement of the issue), asserted on the recorded inputs.
// check returns the violations; breakIt changes a copy of the stack so that the control
// no longer holds, to show that check can fail.
type control struct {
	id      string
	what    string
	check   func(s *stack) findings
	breakIt func(s *stack)
}

// Controls whose setting follows a stack toggle (deletion protection, backups, log
// retention, Multi-AZ database) assert that the resources follow the stack's config;
// TestProdExampleTurnsOnEveryToggle asserts that prod has every toggle on.
var controls = []control{
	// API Gateway.
	{"APIGateway.1", "every stage has execution logging at ERROR or INFO for all methods, without request data",
		func(s *stack) (f findings) {
			if f.none(s, tStage) {
				return
			}
			for _, st := range s.of(tStage) {
				ok := false
				for _, ms := range s.of(tMethodSettings) {
					if ms.str("stageName") == st.str("stageName") && ms.str("methodPath") == "*/*" {
						lvl, _ := path(ms.In, "settings.loggingLevel").(string)
						trace, _ := path(ms.In, "settings.dataTraceEnabled").(bool)
						ok = (lvl == "ERROR" || lvl == "INFO") && !trace
					}
				}
				if !ok {
					f.add("stage %s: no */* method settings with loggingLevel ERROR or INFO and data trace off", st.Name)
				}
			}
			return
		},
		func(s *stack) { s.of(tMethodSettings)[0].In["settings"].(map[string]any)["loggingLevel"] = "OFF" }},
	{"APIGateway.3", "every REST API stage has X-Ray tracing on",
		func(s *stack) (f findings) {
			if f.none(s, tStage) {
				return
			}
			for _, st := range s.of(tStage) {
				if !st.flag("xrayTracingEnabled") {
					f.add("stage %s: xrayTracingEnabled is off", st.Name)
				}
			}
			return
		},
		func(s *stack) { s.of(tStage)[0].In["xrayTracingEnabled"] = false }},
	{"APIGateway.4", "every stage is associated with a WAF web ACL",
		func(s *stack) (f findings) {
			if f.none(s, tStage) {
				return
			}
			for _, st := range s.of(tStage) {
				found := false
				for _, a := range s.of(tWebACLAssoc) {
					if a.str("resourceArn") == st.outStr("arn") && s.byID(a.str("webAclArn")) != nil {
						found = true
					}
				}
				if !found {
					f.add("stage %s (%s) has no web ACL association", st.Name, st.outStr("arn"))
				}
			}
			return
		},
		func(s *stack) { s.remove(tWebACLAssoc) }},
	{"APIGateway.5", "REST API cache data is encrypted (and no cache cluster runs)",
		func(s *stack) (f findings) {
			if f.none(s, tMethodSettings) {
				return
			}
			for _, ms := range s.of(tMethodSettings) {
				if enc, _ := path(ms.In, "settings.cacheDataEncrypted").(bool); !enc {
					f.add("method settings %s: cacheDataEncrypted is off", ms.Name)
				}
			}
			for _, st := range s.of(tStage) {
				if st.flag("cacheClusterEnabled") {
					f.add("stage %s: a cache cluster holds per-principal responses", st.Name)
				}
			}
			return
		},
		func(s *stack) { s.of(tMethodSettings)[0].In["settings"].(map[string]any)["cacheDataEncrypted"] = false }},

	// ECS.
	{"ECS.2", "no ECS service assigns public IPs",
		func(s *stack) (f findings) {
			if f.none(s, tService) {
				return
			}
			for _, svc := range s.of(tService) {
				if v, ok := path(svc.In, "networkConfiguration.assignPublicIp").(bool); !ok || v {
					f.add("service %s: assignPublicIp is %v, want false", svc.Name, path(svc.In, "networkConfiguration.assignPublicIp"))
				}
			}
			return
		},
		func(s *stack) { s.of(tService)[0].In["networkConfiguration"].(map[string]any)["assignPublicIp"] = true }},
	{"ECS.4", "no container is privileged",
		checkContainers(func(c map[string]any) string {
			if p, _ := c["privileged"].(bool); p {
				return "privileged"
			}
			return ""
		}),
		func(s *stack) { s.editContainer(func(c map[string]any) { c["privileged"] = true }) }},
	{"ECS.5", "every container has a read-only root filesystem",
		checkContainers(func(c map[string]any) string {
			if r, _ := c["readonlyRootFilesystem"].(bool); !r {
				return "root filesystem is writable"
			}
			return ""
		}),
		func(s *stack) { s.editContainer(func(c map[string]any) { c["readonlyRootFilesystem"] = false }) }},
	{"ECS.8", "no secret is passed as a container environment variable (AWS keys, or any secret setting of registrar)",
		checkContainers(func(c map[string]any) string {
			forbidden := map[string]bool{"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "ECS_ENGINE_AUTH_DATA": true}
			for _, st := range config.Settings {
				if st.Secret {
					forbidden[st.Env] = true
					forbidden[st.Env+"_FILE"] = true
				}
			}
			for _, e := range c["environment"].([]any) {
				name := e.(map[string]any)["name"].(string)
				if forbidden[name] {
					return "secret " + name + " in environment"
				}
				if strings.Contains(strings.ToLower(name), "password") || strings.Contains(strings.ToLower(name), "secret") {
					return "secret-looking " + name + " in environment"
				}
			}
			return ""
		}),
		func(s *stack) {
			s.editContainer(func(c map[string]any) {
				c["environment"] = append(c["environment"].([]any), map[string]any{"name": "REGISTRAR_REDIS_PASSWORD", "value": "x"})
			})
		}},
	{"ECS.9", "every task definition logs to an encrypted log group of the stack",
		func(s *stack) (f findings) {
			if f.none(s, tTaskDef) {
				return
			}
			for _, td := range s.of(tTaskDef) {
				c, err := td.container()
				if err != nil {
					f.add("%v", err)
					continue
				}
				driver, _ := path(c, "logConfiguration.logDriver").(string)
				group, _ := path(c, "logConfiguration.options.awslogs-group").(string)
				found := false
				for _, lg := range s.of(tLogGroup) {
					if lg.str("name") == group && lg.str("kmsKeyId") != "" {
						found = true
					}
				}
				if driver != "awslogs" || !found {
					f.add("task definition %s: log driver %q to group %q, want awslogs to an encrypted group of the stack", td.Name, driver, group)
				}
			}
			return
		},
		func(s *stack) { s.editContainer(func(c map[string]any) { delete(c, "logConfiguration") }) }},
	{"ECS.10", "Fargate services run on the LATEST platform version",
		func(s *stack) (f findings) {
			if f.none(s, tService) {
				return
			}
			for _, svc := range s.of(tService) {
				if svc.str("launchType") != "FARGATE" || (svc.str("platformVersion") != "LATEST" && svc.str("platformVersion") != "") {
					f.add("service %s: launch type %q, platform %q", svc.Name, svc.str("launchType"), svc.str("platformVersion"))
				}
			}
			return
		},
		func(s *stack) { s.of(tService)[0].In["platformVersion"] = "1.3.0" }},
	{"ECS.12", "the ECS cluster has Container Insights on",
		func(s *stack) (f findings) {
			if f.none(s, tECSCluster) {
				return
			}
			for _, c := range s.of(tECSCluster) {
				on := false
				for _, st := range c.arr("settings") {
					m := st.(map[string]any)
					if m["name"] == "containerInsights" && (m["value"] == "enabled" || m["value"] == "enhanced") {
						on = true
					}
				}
				if !on {
					f.add("cluster %s: Container Insights off", c.Name)
				}
			}
			return
		},
		func(s *stack) {
			s.of(tECSCluster)[0].In["settings"] = []any{map[string]any{"name": "containerInsights", "value": "disabled"}}
		}},

	// EFS.
	{"EFS.1", "the file system is encrypted with the files CMK",
		func(s *stack) (f findings) {
			if f.none(s, tFS) {
				return
			}
			for _, fs := range s.of(tFS) {
				if !fs.flag("encrypted") || fs.str("kmsKeyId") != s.keyARN("files") {
					f.add("file system %s: encrypted=%v key=%q, want true and %q", fs.Name, fs.flag("encrypted"), fs.str("kmsKeyId"), s.keyARN("files"))
				}
			}
			return
		},
		func(s *stack) { s.of(tFS)[0].In["encrypted"] = false }},
	{"EFS.2", "every file system has a backup policy, ENABLED exactly when the stack has backups",
		func(s *stack) (f findings) {
			if f.none(s, tFS) {
				return
			}
			for _, fs := range s.of(tFS) {
				want := map[bool]string{true: "ENABLED", false: "DISABLED"}[s.Cfg.Backups]
				got := ""
				for _, bp := range s.of(tBackupPolicy) {
					if bp.str("fileSystemId") == fs.ID {
						got, _ = path(bp.In, "backupPolicy.status").(string)
					}
				}
				if got != want {
					f.add("file system %s: backup policy %q, want %q", fs.Name, got, want)
				}
			}
			return
		},
		func(s *stack) { s.remove(tBackupPolicy) }},
	{"EFS.3", "every access point enforces a root directory other than /",
		func(s *stack) (f findings) {
			if f.none(s, tAccessPoint) {
				return
			}
			for _, ap := range s.of(tAccessPoint) {
				if p, _ := path(ap.In, "rootDirectory.path").(string); p == "" || p == "/" {
					f.add("access point %s: root directory %q", ap.Name, p)
				}
			}
			return
		},
		func(s *stack) { s.of(tAccessPoint)[0].In["rootDirectory"].(map[string]any)["path"] = "/" }},
	{"EFS.4", "every access point enforces the container's user identity",
		func(s *stack) (f findings) {
			if f.none(s, tAccessPoint) {
				return
			}
			for _, ap := range s.of(tAccessPoint) {
				uid, _ := path(ap.In, "posixUser.uid").(float64)
				gid, _ := path(ap.In, "posixUser.gid").(float64)
				if path(ap.In, "posixUser") == nil || uid != containerUID || gid != containerUID {
					f.add("access point %s: posix user %v, want %d:%d", ap.Name, path(ap.In, "posixUser"), containerUID, containerUID)
				}
			}
			return
		},
		func(s *stack) { delete(s.of(tAccessPoint)[0].In, "posixUser") }},
	{"EFS.6", "mount targets are only in private app subnets, never public ones",
		func(s *stack) (f findings) {
			if f.none(s, tMountTarget) {
				return
			}
			for _, mt := range s.of(tMountTarget) {
				sub := s.byID(mt.str("subnetId"))
				if sub == nil || sub.Type != tSubnet || path(sub.In, "tags.tier") != "app" || sub.flag("mapPublicIpOnLaunch") {
					f.add("mount target %s: subnet %q is not a private app subnet", mt.Name, mt.str("subnetId"))
				}
			}
			return
		},
		func(s *stack) {
			for _, sub := range s.of(tSubnet) {
				if path(sub.In, "tags.tier") == "public" {
					s.of(tMountTarget)[0].In["subnetId"] = sub.ID
					return
				}
			}
		}},

	// ElastiCache.
	{"ElastiCache.1", "automatic backups (snapshots) exactly when the stack has backups",
		func(s *stack) (f findings) {
			if f.none(s, tCache) {
				return
			}
			for _, c := range s.of(tCache) {
				n := c.num("snapshotRetentionLimit")
				if s.Cfg.Backups && n < 1 || !s.Cfg.Backups && n != 0 {
					f.add("replication group %s: snapshot retention %v with backups=%v", c.Name, n, s.Cfg.Backups)
				}
			}
			return
		},
		func(s *stack) {
			c := s.of(tCache)[0]
			c.In["snapshotRetentionLimit"] = map[bool]float64{true: 0, false: 3}[s.Cfg.Backups]
		}},
	{"ElastiCache.2", "automatic minor version upgrades",
		cacheFlag("autoMinorVersionUpgrade"), breakCacheFlag("autoMinorVersionUpgrade")},
	{"ElastiCache.3", "automatic failover, Multi-AZ, at least two nodes in two AZs",
		func(s *stack) (f findings) {
			f = cacheFlag("automaticFailoverEnabled")(s)
			f = append(f, cacheFlag("multiAzEnabled")(s)...)
			for _, c := range s.of(tCache) {
				azs := map[any]bool{}
				for _, az := range c.arr("preferredCacheClusterAzs") {
					azs[az] = true
				}
				if c.num("numCacheClusters") < 2 || len(azs) < 2 {
					f.add("replication group %s: %v nodes in %d AZs", c.Name, c.num("numCacheClusters"), len(azs))
				}
			}
			return
		},
		breakCacheFlag("automaticFailoverEnabled")},
	{"ElastiCache.4", "encrypted at rest with the cache CMK",
		func(s *stack) (f findings) {
			f = cacheFlag("atRestEncryptionEnabled")(s)
			for _, c := range s.of(tCache) {
				if c.str("kmsKeyId") != s.keyARN("cache") {
					f.add("replication group %s: key %q, want %q", c.Name, c.str("kmsKeyId"), s.keyARN("cache"))
				}
			}
			return
		},
		breakCacheFlag("atRestEncryptionEnabled")},
	{"ElastiCache.5", "encrypted in transit, TLS required",
		func(s *stack) (f findings) {
			f = cacheFlag("transitEncryptionEnabled")(s)
			for _, c := range s.of(tCache) {
				if c.str("transitEncryptionMode") != "required" {
					f.add("replication group %s: transit encryption mode %q", c.Name, c.str("transitEncryptionMode"))
				}
			}
			return
		},
		breakCacheFlag("transitEncryptionEnabled")},
	{"ElastiCache.6", "Redis AUTH: a generated token, marked secret, the same as the Secrets Manager value",
		func(s *stack) (f findings) {
			if f.none(s, tCache) {
				return
			}
			for _, c := range s.of(tCache) {
				tok := c.str("authToken")
				if len(tok) < 32 || !c.Secret["authToken"] {
					f.add("replication group %s: auth token of length %d, secret=%v", c.Name, len(tok), c.Secret["authToken"])
				}
				same := false
				for _, v := range s.of(tSecretVersion) {
					if v.str("secretString") == tok && tok != "" {
						same = true
					}
				}
				if !same {
					f.add("replication group %s: auth token is not the value of a Secrets Manager secret", c.Name)
				}
			}
			return
		},
		func(s *stack) { delete(s.of(tCache)[0].In, "authToken") }},
	{"ElastiCache.7", "not the default subnet group: the stack's own, over isolated data subnets",
		func(s *stack) (f findings) {
			if f.none(s, tCache) {
				return
			}
			for _, c := range s.of(tCache) {
				var group *res
				for _, g := range s.of(tCacheSubnets) {
					if g.str("name") == c.str("subnetGroupName") {
						group = g
					}
				}
				if group == nil || c.str("subnetGroupName") == "default" {
					f.add("replication group %s: subnet group %q", c.Name, c.str("subnetGroupName"))
					continue
				}
				for _, id := range group.arr("subnetIds") {
					if sub := s.byID(id.(string)); sub == nil || path(sub.In, "tags.tier") != "data" {
						f.add("cache subnet group: subnet %v is not a data subnet", id)
					}
				}
			}
			return
		},
		func(s *stack) { s.of(tCache)[0].In["subnetGroupName"] = "default" }},

	// Load balancers.
	{"ELB.1", "the ALB has no plain HTTP listener (HTTPS only, nothing to redirect)",
		func(s *stack) (f findings) {
			if f.none(s, tListener) {
				return
			}
			for _, l := range s.of(tListener) {
				lb := s.byID(l.str("loadBalancerArn"))
				if lb != nil && lb.str("loadBalancerType") == "application" && l.str("protocol") != "HTTPS" {
					f.add("ALB listener %s: protocol %q", l.Name, l.str("protocol"))
				}
			}
			return
		},
		func(s *stack) {
			alb := s.byName(tLB, "alb")
			s.add(tListener, "alb-http", map[string]any{"loadBalancerArn": alb.outStr("arn"), "protocol": "HTTP", "port": 80.0})
		}},
	{"ELB.4", "the ALB drops invalid header fields",
		func(s *stack) (f findings) {
			n := 0
			for _, lb := range s.of(tLB) {
				if lb.str("loadBalancerType") == "application" {
					n++
					if !lb.flag("dropInvalidHeaderFields") {
						f.add("ALB %s keeps invalid header fields", lb.Name)
					}
				}
			}
			if n == 0 {
				f.add("no ALB")
			}
			return
		},
		func(s *stack) { s.byName(tLB, "alb").In["dropInvalidHeaderFields"] = false }},
	{"ELB.5", "the ALB writes access logs to the stack's bucket",
		func(s *stack) (f findings) {
			alb := s.byName(tLB, "alb")
			if alb == nil {
				f.add("no ALB")
				return
			}
			on, _ := path(alb.In, "accessLogs.enabled").(bool)
			bucket, _ := path(alb.In, "accessLogs.bucket").(string)
			if !on || bucket == "" || s.byName("aws:s3/bucketV2:BucketV2", "alb-logs").str("bucket") != bucket {
				f.add("ALB access logs: enabled=%v bucket=%q", on, bucket)
			}
			return
		},
		func(s *stack) { s.byName(tLB, "alb").In["accessLogs"].(map[string]any)["enabled"] = false }},
	{"ELB.6", "load balancers have deletion protection exactly when the stack has it",
		func(s *stack) (f findings) {
			if f.none(s, tLB) {
				return
			}
			for _, lb := range s.of(tLB) {
				if lb.flag("enableDeletionProtection") != s.Cfg.DeletionProtection {
					f.add("load balancer %s: deletion protection %v, stack wants %v", lb.Name, lb.flag("enableDeletionProtection"), s.Cfg.DeletionProtection)
				}
			}
			return
		},
		func(s *stack) { s.of(tLB)[0].In["enableDeletionProtection"] = !s.Cfg.DeletionProtection }},
	{"ELB.13", "every load balancer spans at least two AZs",
		func(s *stack) (f findings) {
			if f.none(s, tLB) {
				return
			}
			for _, lb := range s.of(tLB) {
				azs := map[string]bool{}
				for _, id := range lb.arr("subnets") {
					if sub := s.byID(id.(string)); sub != nil {
						azs[sub.str("availabilityZone")] = true
					}
				}
				if len(azs) < 2 {
					f.add("load balancer %s: %d AZs", lb.Name, len(azs))
				}
			}
			return
		},
		func(s *stack) { lb := s.of(tLB)[0]; lb.In["subnets"] = lb.arr("subnets")[:1] }},
	{"ELB.17", "TLS listeners use the recommended TLS 1.3/1.2 policy",
		func(s *stack) (f findings) {
			n := 0
			for _, l := range s.of(tListener) {
				if p := l.str("protocol"); p == "HTTPS" || p == "TLS" {
					n++
					if l.str("sslPolicy") != tlsPolicy {
						f.add("listener %s: policy %q", l.Name, l.str("sslPolicy"))
					}
				}
			}
			if n == 0 {
				f.add("no TLS listener")
			}
			return
		},
		func(s *stack) { s.byName(tListener, "alb-https").In["sslPolicy"] = "ELBSecurityPolicy-2016-08" }},
	{"ELB.18", "ALB listeners are HTTPS; the NLB's only listener is the documented TCP pass-through of TLS to the ALB on 443",
		func(s *stack) (f findings) {
			if f.none(s, tListener) {
				return
			}
			for _, l := range s.of(tListener) {
				lb := s.byID(l.str("loadBalancerArn"))
				if lb == nil {
					f.add("listener %s: unknown load balancer", l.Name)
					continue
				}
				switch {
				case lb.str("loadBalancerType") == "application" && l.str("protocol") == "HTTPS":
				case lb.str("loadBalancerType") == "network" && l.str("protocol") == "TLS":
				case lb.str("loadBalancerType") == "network" && l.str("protocol") == "TCP" && l.num("port") == httpsPort:
					tg := s.byID(path(l.In, "defaultActions.0.targetGroupArn").(string))
					if tg == nil || tg.str("targetType") != "alb" || tg.num("port") != httpsPort {
						f.add("NLB TCP listener %s does not pass through to the ALB's HTTPS listener", l.Name)
					}
				default:
					f.add("listener %s on %s: protocol %q", l.Name, lb.Name, l.str("protocol"))
				}
			}
			return
		},
		func(s *stack) { s.byName(tListener, "alb-https").In["protocol"] = "HTTP" }},

	// RDS.
	{"RDS.2", "no database instance is publicly accessible",
		dbInstances(func(i *res) string {
			if v, ok := i.In["publiclyAccessible"].(bool); !ok || v {
				return "publicly accessible"
			}
			return ""
		}),
		func(s *stack) { s.of(tDBInstance)[0].In["publiclyAccessible"] = true }},
	{"RDS.6", "enhanced monitoring on every instance",
		dbInstances(func(i *res) string {
			if i.num("monitoringInterval") <= 0 || i.str("monitoringRoleArn") == "" {
				return "no enhanced monitoring"
			}
			return ""
		}),
		func(s *stack) { s.of(tDBInstance)[0].In["monitoringInterval"] = 0.0 }},
	{"RDS.7", "the cluster has deletion protection exactly when the stack has it, and a final snapshot then",
		func(s *stack) (f findings) {
			if f.none(s, tDBCluster) {
				return
			}
			for _, c := range s.of(tDBCluster) {
				if c.flag("deletionProtection") != s.Cfg.DeletionProtection || c.flag("skipFinalSnapshot") == s.Cfg.DeletionProtection {
					f.add("cluster %s: deletionProtection=%v skipFinalSnapshot=%v, stack wants protection %v", c.Name, c.flag("deletionProtection"), c.flag("skipFinalSnapshot"), s.Cfg.DeletionProtection)
				}
			}
			return
		},
		func(s *stack) { c := s.of(tDBCluster)[0]; c.In["deletionProtection"] = !c.flag("deletionProtection") }},
	{"RDS.12", "IAM database authentication is on",
		clusterFlag("iamDatabaseAuthenticationEnabled"), breakClusterFlag("iamDatabaseAuthenticationEnabled")},
	{"RDS.15", "the stack's number of instances, writer and readers in different AZs",
		func(s *stack) (f findings) {
			if f.none(s, tDBInstance) {
				return
			}
			insts := s.of(tDBInstance)
			azs := map[string]bool{}
			for _, i := range insts {
				azs[i.str("availabilityZone")] = true
			}
			if len(insts) != s.Cfg.DBInstances || len(azs) != len(insts) {
				f.add("%d instances in %d AZs, stack wants %d in as many AZs", len(insts), len(azs), s.Cfg.DBInstances)
			}
			return
		},
		func(s *stack) {
			i := s.of(tDBInstance)[0]
			s.add(tDBInstance, "db-extra", map[string]any{"availabilityZone": i.str("availabilityZone")})
		}},
	{"RDS.16", "the cluster copies tags to snapshots",
		clusterFlag("copyTagsToSnapshot"), breakClusterFlag("copyTagsToSnapshot")},
	{"RDS.24", "the master user has a custom name",
		func(s *stack) (f findings) {
			if f.none(s, tDBCluster) {
				return
			}
			for _, c := range s.of(tDBCluster) {
				switch strings.ToLower(c.str("masterUsername")) {
				case "", "postgres", "admin", "root":
					f.add("cluster %s: master user %q", c.Name, c.str("masterUsername"))
				}
			}
			return
		},
		func(s *stack) { s.of(tDBCluster)[0].In["masterUsername"] = "postgres" }},
	{"RDS.27", "the cluster is encrypted at rest with the database CMK",
		func(s *stack) (f findings) {
			f = clusterFlag("storageEncrypted")(s)
			for _, c := range s.of(tDBCluster) {
				if c.str("kmsKeyId") != s.keyARN("database") {
					f.add("cluster %s: key %q", c.Name, c.str("kmsKeyId"))
				}
			}
			return
		},
		breakClusterFlag("storageEncrypted")},
	{"RDS.35", "automatic minor version upgrades (per instance: Aurora applies them to instances)",
		dbInstances(func(i *res) string {
			if !i.flag("autoMinorVersionUpgrade") {
				return "no automatic minor version upgrade"
			}
			return ""
		}),
		func(s *stack) { s.of(tDBInstance)[0].In["autoMinorVersionUpgrade"] = false }},
	{"RDS.37", "PostgreSQL logs are exported to an encrypted log group",
		func(s *stack) (f findings) {
			if f.none(s, tDBCluster) {
				return
			}
			for _, c := range s.of(tDBCluster) {
				exports := stringsOf(c.In["enabledCloudwatchLogsExports"])
				want := "/aws/rds/cluster/" + c.str("clusterIdentifier") + "/postgresql"
				lg := s.byName(tLogGroup, "lg-db-postgresql")
				if !contains(exports, "postgresql") || lg == nil || lg.str("name") != want || lg.str("kmsKeyId") == "" {
					f.add("cluster %s: exports %v, log group %q must be pre-created encrypted", c.Name, exports, want)
				}
			}
			return
		},
		func(s *stack) { s.of(tDBCluster)[0].In["enabledCloudwatchLogsExports"] = []any{} }},
	{"RDS.force_ssl", "the cluster's parameter group sets rds.force_ssl=1 and TLS 1.2 at least",
		func(s *stack) (f findings) {
			if f.none(s, tDBCluster) {
				return
			}
			for _, c := range s.of(tDBCluster) {
				var pg *res
				for _, p := range s.of(tDBParams) {
					if p.str("name") == c.str("dbClusterParameterGroupName") {
						pg = p
					}
				}
				if pg == nil {
					f.add("cluster %s: parameter group %q not in the stack", c.Name, c.str("dbClusterParameterGroupName"))
					continue
				}
				params := map[string]string{}
				for _, p := range pg.arr("parameters") {
					m := p.(map[string]any)
					params[m["name"].(string)] = m["value"].(string)
				}
				if params["rds.force_ssl"] != "1" || params["ssl_min_protocol_version"] != "TLSv1.2" {
					f.add("parameter group %s: force_ssl=%q ssl_min_protocol_version=%q", pg.Name, params["rds.force_ssl"], params["ssl_min_protocol_version"])
				}
			}
			return
		},
		func(s *stack) {
			for _, p := range s.of(tDBParams)[0].arr("parameters") {
				if m := p.(map[string]any); m["name"] == "rds.force_ssl" {
					m["value"] = "0"
				}
			}
		}},

	// Kinesis.
	{"Kinesis.1", "streams are encrypted with the stream CMK",
		func(s *stack) (f findings) {
			if f.none(s, tStream) {
				return
			}
			for _, st := range s.of(tStream) {
				if st.str("encryptionType") != "KMS" || st.str("kmsKeyId") != s.keyARN("stream") {
					f.add("stream %s: %q with key %q", st.Name, st.str("encryptionType"), st.str("kmsKeyId"))
				}
			}
			return
		},
		func(s *stack) { s.of(tStream)[0].In["encryptionType"] = "NONE" }},
	{"Kinesis.3", "streams keep data 7 days (168 hours)",
		func(s *stack) (f findings) {
			if f.none(s, tStream) {
				return
			}
			for _, st := range s.of(tStream) {
				if st.num("retentionPeriod") < 168 {
					f.add("stream %s: retention %v hours", st.Name, st.num("retentionPeriod"))
				}
			}
			return
		},
		func(s *stack) { s.of(tStream)[0].In["retentionPeriod"] = 24.0 }},

	// KMS.
	{"KMS.1", "no customer managed IAM policy allows decryption on all KMS keys",
		func(s *stack) (f findings) { return decryptOnAllKeys(s, tIAMPolicy, "policy") },
		func(s *stack) {
			s.add(tIAMPolicy, "wide", map[string]any{"policy": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}`})
		}},
	{"KMS.2", "no inline IAM policy allows decryption on all KMS keys",
		func(s *stack) (f findings) {
			if f.none(s, tRolePolicy) {
				return
			}
			return decryptOnAllKeys(s, tRolePolicy, "policy")
		},
		func(s *stack) {
			s.byName(tRolePolicy, "task-policy").In["policy"] = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Decrypt"],"Resource":["*"]}]}`
		}},
	{"KMS.3", "keys cannot be deleted on short notice: a 30-day deletion window",
		func(s *stack) (f findings) {
			if f.none(s, tKey) {
				return
			}
			for _, k := range s.of(tKey) {
				if k.num("deletionWindowInDays") != 30 {
					f.add("key %s: deletion window %v", k.Name, k.num("deletionWindowInDays"))
				}
			}
			return
		},
		func(s *stack) { s.of(tKey)[0].In["deletionWindowInDays"] = 7.0 }},
	{"KMS.4", "key rotation is on for every key",
		func(s *stack) (f findings) {
			if f.none(s, tKey) {
				return
			}
			for _, k := range s.of(tKey) {
				if !k.flag("enableKeyRotation") {
					f.add("key %s: rotation off", k.Name)
				}
			}
			return
		},
		func(s *stack) { s.of(tKey)[0].In["enableKeyRotation"] = false }},

	// Secrets Manager.
	{"SecretsManager.1", "every secret rotates automatically, or is a named exception with its procedure",
		checkRotation, func(s *stack) { s.byName(tDBCluster, "db").In["manageMasterUserPassword"] = false }},
	{"SecretsManager.3", "no unused secret: every secret is injected into the task",
		func(s *stack) (f findings) {
			if f.none(s, tSecret) {
				return
			}
			used := map[string]bool{}
			for _, td := range s.of(tTaskDef) {
				c, err := td.container()
				if err != nil {
					f.add("%v", err)
					return
				}
				for _, sec := range c["secrets"].([]any) {
					used[secretARN(sec.(map[string]any)["valueFrom"].(string))] = true
				}
			}
			for _, sec := range s.of(tSecret) {
				if !used[sec.outStr("arn")] {
					f.add("secret %s is created but no task reads it", sec.Name)
				}
			}
			if !used[mockDBSecretARN] {
				f.add("the RDS-managed secret is not injected")
			}
			return
		},
		func(s *stack) { s.add(tSecret, "secret-unused", map[string]any{"name": "registrar/unused"}) }},
	{"SecretsManager.4", "secrets are rotated within 90 days, or are a named exception with its procedure",
		checkRotation, func(s *stack) {
			s.byName(tSecretRotation, "secret-redis-auth-rotation").In["rotationRules"] = map[string]any{"automaticallyAfterDays": 365.0}
		}},

	// EC2.
	{"EC2.2", "the VPC's default security group has no rules",
		func(s *stack) (f findings) {
			if f.none(s, tVPC) {
				return
			}
			for _, v := range s.of(tVPC) {
				found := false
				for _, d := range s.of(tDefaultSG) {
					if d.str("vpcId") == v.ID {
						found = true
						if len(d.arr("ingress")) > 0 || len(d.arr("egress")) > 0 {
							f.add("default security group of %s has rules", v.Name)
						}
					}
				}
				if !found {
					f.add("VPC %s: default security group not taken over", v.Name)
				}
			}
			return
		},
		func(s *stack) {
			s.of(tDefaultSG)[0].In["ingress"] = []any{map[string]any{"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "self": true}}
		}},
	{"EC2.6", "VPC flow logs of all traffic to an encrypted log group",
		func(s *stack) (f findings) {
			if f.none(s, tVPC) {
				return
			}
			for _, v := range s.of(tVPC) {
				found := false
				for _, fl := range s.of(tFlowLog) {
					lg := s.byID(fl.str("logDestination"))
					if fl.str("vpcId") == v.ID && fl.str("trafficType") == "ALL" && lg != nil && lg.str("kmsKeyId") != "" {
						found = true
					}
				}
				if !found {
					f.add("VPC %s: no flow log of ALL traffic to an encrypted group", v.Name)
				}
			}
			return
		},
		func(s *stack) { s.remove(tFlowLog) }},
	{"EC2.15", "no subnet auto-assigns public IPs",
		func(s *stack) (f findings) {
			if f.none(s, tSubnet) {
				return
			}
			for _, sub := range s.of(tSubnet) {
				if v, ok := sub.In["mapPublicIpOnLaunch"].(bool); !ok || v {
					f.add("subnet %s: mapPublicIpOnLaunch %v", sub.Name, sub.In["mapPublicIpOnLaunch"])
				}
			}
			return
		},
		func(s *stack) { s.of(tSubnet)[0].In["mapPublicIpOnLaunch"] = true }},
	{"EC2.18", "no security group allows ingress from anywhere (all ingress is from another group)",
		func(s *stack) (f findings) { return openIngress(s, nil) },
		breakOpenIngress(443)},
	{"EC2.19", "no security group opens a high-risk port to anywhere",
		func(s *stack) (f findings) {
			return openIngress(s, []int{20, 21, 22, 23, 25, 110, 135, 143, 445, 1433, 1434, 3000, 3306, 3389, 4333, 5000, 5432, 5500, 5601, 8080, 8088, 8888, 9200, 9300})
		},
		breakOpenIngress(5432)},

	// CloudWatch.
	{"CloudWatch.16", "every log group is encrypted with the logs CMK and kept for the stack's retention",
		func(s *stack) (f findings) {
			if f.none(s, tLogGroup) {
				return
			}
			for _, lg := range s.of(tLogGroup) {
				if lg.num("retentionInDays") != float64(s.Cfg.LogRetentionDays) || lg.str("kmsKeyId") != s.keyARN("logs") {
					f.add("log group %s: retention %v key %q, want %d and the logs key", lg.Name, lg.num("retentionInDays"), lg.str("kmsKeyId"), s.Cfg.LogRetentionDays)
				}
			}
			return
		},
		func(s *stack) { s.of(tLogGroup)[0].In["retentionInDays"] = 0.0 }},
}

func TestControls(t *testing.T) {
	for _, name := range examples {
		s := deployExample(t, name)
		for _, c := range controls {
			t.Run(name+"/"+c.id+": "+c.what, func(t *testing.T) {
				for _, v := range c.check(s) {
					t.Error(v)
				}
				broken := s.copy(t)
				c.breakIt(broken)
				if len(c.check(broken)) == 0 {
					t.Errorf("the check still passes after breaking %s on purpose", c.id)
				}
			})
		}
	}
}

func (s *stack) byName(typ, name string) *res {
	for _, r := range s.of(typ) {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func checkContainers(bad func(c map[string]any) string) func(s *stack) findings {
	return func(s *stack) (f findings) {
		if f.none(s, tTaskDef) {
			return
		}
		for _, td := range s.of(tTaskDef) {
			c, err := td.container()
			if err != nil {
				f.add("%v", err)
				continue
			}
			if why := bad(c); why != "" {
				f.add("task definition %s: %s", td.Name, why)
			}
		}
		return
	}
}

func cacheFlag(k string) func(s *stack) findings {
	return func(s *stack) (f findings) {
		if f.none(s, tCache) {
			return
		}
		for _, c := range s.of(tCache) {
			if !c.flag(k) {
				f.add("replication group %s: %s is off", c.Name, k)
			}
		}
		return
	}
}

func breakCacheFlag(k string) func(s *stack) {
	return func(s *stack) { s.of(tCache)[0].In[k] = false }
}

func clusterFlag(k string) func(s *stack) findings {
	return func(s *stack) (f findings) {
		if f.none(s, tDBCluster) {
			return
		}
		for _, c := range s.of(tDBCluster) {
			if !c.flag(k) {
				f.add("cluster %s: %s is off", c.Name, k)
			}
		}
		return
	}
}

func breakClusterFlag(k string) func(s *stack) {
	return func(s *stack) { s.of(tDBCluster)[0].In[k] = false }
}

func dbInstances(bad func(i *res) string) func(s *stack) findings {
	return func(s *stack) (f findings) {
		if f.none(s, tDBInstance) {
			return
		}
		for _, i := range s.of(tDBInstance) {
			if why := bad(i); why != "" {
				f.add("instance %s: %s", i.Name, why)
			}
		}
		return
	}
}

// decryptOnAllKeys finds Allow statements that let a principal decrypt with any key.
func decryptOnAllKeys(s *stack, typ, field string) (f findings) {
	for _, p := range s.of(typ) {
		sts, err := parsePolicy(p.str(field))
		if err != nil {
			f.add("%s: %v", p.Name, err)
			continue
		}
		for _, st := range sts {
			if st.Effect != "Allow" || !contains(st.Resources, "*") {
				continue
			}
			for _, a := range st.Actions {
				if a == "*" || a == "kms:*" || a == "kms:Decrypt" || a == "kms:ReEncryptFrom" || a == "kms:ReEncrypt*" {
					f.add("%s: %s on all keys", p.Name, a)
				}
			}
		}
	}
	return
}

// rotationExceptions are the secrets that Secrets Manager does not rotate, each with
// how they are rotated instead (docs/deploy-aws.md, "Rotation").
var rotationExceptions = map[string]string{
	"secret-keyset": "registrar's own keyset: rotated with `registrar keys rotate`, which only the application can do",
}

// checkRotation: the RDS-managed master secret is rotated by RDS (managed rotation,
// every 7 days by default, well within 90); every other secret has a rotation schedule
// of at most 90 days or is a named exception.
func checkRotation(s *stack) (f findings) {
	if f.none(s, tDBCluster) {
		return
	}
	for _, c := range s.of(tDBCluster) {
		if v, ok := c.In["manageMasterUserPassword"].(bool); !ok || !v || c.In["masterPassword"] != nil {
			f.add("cluster %s: master password not managed (and rotated) by RDS", c.Name)
		}
	}
	for _, sec := range s.of(tSecret) {
		rotated := false
		for _, r := range s.of(tSecretRotation) {
			days, _ := path(r.In, "rotationRules.automaticallyAfterDays").(float64)
			fn := s.byID(r.str("rotationLambdaArn"))
			if r.str("secretId") == sec.ID && days > 0 && days <= 90 && fn != nil && fn.Type == "aws:lambda/function:Function" {
				rotated = true
			}
		}
		if _, ok := rotationExceptions[sec.Name]; !rotated && !ok {
			f.add("secret %s: no rotation within 90 days", sec.Name)
		}
	}
	return
}

// secretARN strips ECS's ":json-key:version-stage:version-id" suffix from a valueFrom.
func secretARN(valueFrom string) string {
	parts := strings.Split(valueFrom, ":")
	if len(parts) > 7 {
		parts = parts[:7]
	}
	return strings.Join(parts, ":")
}

func openIngress(s *stack, ports []int) (f findings) {
	if f.none(s, tSGRule) {
		return
	}
	open := func(name string, from, to float64, cidrs []string) {
		for _, c := range cidrs {
			if c != "0.0.0.0/0" && c != "::/0" {
				continue
			}
			if ports == nil {
				f.add("%s: ingress from %s on %v-%v", name, c, from, to)
			}
			for _, p := range ports {
				if float64(p) >= from && float64(p) <= to || from == -1 || from == 0 && to == 0 {
					f.add("%s: high-risk port %d open to %s", name, p, c)
				}
			}
		}
	}
	for _, r := range s.of(tSGRule) {
		if r.str("type") == "ingress" {
			open(r.Name, r.num("fromPort"), r.num("toPort"), append(stringsOf(r.In["cidrBlocks"]), stringsOf(r.In["ipv6CidrBlocks"])...))
		}
	}
	for _, g := range s.of(tSG) {
		for _, in := range g.arr("ingress") {
			m := in.(map[string]any)
			from, _ := m["fromPort"].(float64)
			to, _ := m["toPort"].(float64)
			open(g.Name, from, to, append(stringsOf(m["cidrBlocks"]), stringsOf(m["ipv6CidrBlocks"])...))
		}
	}
	return
}

func breakOpenIngress(port int) func(s *stack) {
	return func(s *stack) {
		s.add(tSGRule, "sgr-open", map[string]any{"type": "ingress", "securityGroupId": "sg-database-id", "protocol": "tcp",
			"fromPort": float64(port), "toPort": float64(port), "cidrBlocks": []any{"0.0.0.0/0"}})
	}
}
