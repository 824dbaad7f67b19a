package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// starResourceActions are the only actions granted on Resource "*", because AWS has no
// resource type for them.
var starResourceActions = map[string]bool{"ecr:GetAuthorizationToken": true, "secretsmanager:GetRandomPassword": true}

// unconditionedTrust are the services whose role trust has no aws:SourceAccount
// condition, because they do not pass one to STS.
var unconditionedTrust = map[string]bool{"Service:lambda.amazonaws.com": true, "Service:apigateway.amazonaws.com": true}

// awsManagedPolicies are the AWS managed policies the stack attaches, each to a role
// that only an AWS service assumes, because AWS documents them as the way to grant it.
var awsManagedPolicies = map[string]string{
	"db-monitoring-role": "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
	"apigw-logs-role":    "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
}

// identityPolicyFindings checks identity (role) policies: no wildcard actions, no "*"
// resource except for starResourceActions, no wildcard account/region/service in an
// ARN.
func identityPolicyFindings(s *stack) (f findings) {
	if f.none(s, tRolePolicy) {
		return
	}
	docs := map[string]string{}
	for _, p := range s.of(tRolePolicy) {
		docs[p.Name] = p.str("policy")
	}
	for _, p := range s.of(tIAMPolicy) {
		docs[p.Name] = p.str("policy")
	}
	for _, r := range s.of(tRole) {
		for _, ip := range r.arr("inlinePolicies") {
			docs[r.Name+"/inline"] = fmt.Sprint(ip.(map[string]any)["policy"])
		}
	}
	for name, doc := range docs {
		sts, err := parsePolicy(doc)
		if err != nil {
			f.add("%s: %v", name, err)
			continue
		}
		for _, st := range sts {
			if st.Effect != "Allow" {
				continue
			}
			for _, a := range st.Actions {
				if strings.Contains(a, "*") {
					f.add("%s/%s: wildcard action %q", name, st.Sid, a)
				}
			}
			for _, r := range st.Resources {
				if r == "*" {
					for _, a := range st.Actions {
						if !starResourceActions[a] {
							f.add("%s/%s: %s on Resource \"*\"", name, st.Sid, a)
						}
					}
					continue
				}
				parts := strings.SplitN(r, ":", 6)
				if len(parts) < 6 || strings.Contains(strings.Join(parts[:5], ":"), "*") {
					f.add("%s/%s: resource %q is not a specific ARN", name, st.Sid, r)
				}
			}
		}
	}
	return
}

// resourcePolicyFindings checks key, bucket and file system policies: no kms:* (or any
// "*" action) in an Allow, never an Allow to everyone, and every use of a key by the
// account as a whole only through one AWS service.
func resourcePolicyFindings(s *stack) (f findings) {
	type doc struct{ name, policy string }
	var docs []doc
	for _, k := range s.of(tKey) {
		docs = append(docs, doc{k.Name, k.str("policy")})
	}
	for _, p := range s.of(tBucketPolicy) {
		docs = append(docs, doc{p.Name, p.str("policy")})
	}
	for _, p := range s.of(tFSPolicy) {
		docs = append(docs, doc{p.Name, p.str("policy")})
	}
	if len(docs) == 0 {
		f.add("no resource policies")
	}
	useActions := map[string]bool{"kms:Encrypt": true, "kms:Decrypt": true, "kms:GenerateDataKey": true, "kms:ReEncryptFrom": true, "kms:ReEncryptTo": true, "kms:GenerateDataKeyWithoutPlaintext": true, "kms:CreateGrant": true}
	for _, d := range docs {
		sts, err := parsePolicy(d.policy)
		if err != nil {
			f.add("%s: %v", d.name, err)
			continue
		}
		for _, st := range sts {
			if st.Effect != "Allow" {
				continue
			}
			for _, a := range st.Actions {
				if strings.Contains(a, "*") {
					f.add("%s/%s: wildcard action %q", d.name, st.Sid, a)
				}
			}
			for _, p := range st.Principals {
				if p == "*" || p == "AWS:*" {
					f.add("%s/%s: allows everyone", d.name, st.Sid)
				}
				if strings.HasSuffix(p, ":root") {
					for _, a := range st.Actions {
						if useActions[a] && path(st.Condition, "StringEquals.kms:ViaService") == nil {
							f.add("%s/%s: the whole account may %s outside a service", d.name, st.Sid, a)
						}
					}
				}
			}
		}
	}
	return
}

func TestIAMPolicies(t *testing.T) {
	for _, name := range examples {
		s := deployExample(t, name)
		t.Run(name+": identity policies have no wildcard actions and no * resources except where AWS requires it", func(t *testing.T) {
			for _, v := range identityPolicyFindings(s) {
				t.Error(v)
			}
			broken := s.copy(t)
			broken.named(t, tRolePolicy, "task-policy").In["policy"] = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]}`
			if len(identityPolicyFindings(broken)) == 0 {
				t.Error("kinesis:* on * was not found")
			}
		})
		t.Run(name+": key, bucket and file system policies have no kms:* and no Allow to everyone", func(t *testing.T) {
			for _, v := range resourcePolicyFindings(s) {
				t.Error(v)
			}
			broken := s.copy(t)
			broken.of(tKey)[0].In["policy"] = `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}`
			if len(resourcePolicyFindings(broken)) == 0 {
				t.Error("kms:* for the account was not found")
			}
		})
		t.Run(name+": roles are assumed only by their AWS service, for this account; managed policies only where documented", func(t *testing.T) {
			for _, r := range s.of(tRole) {
				sts, err := parsePolicy(r.str("assumeRolePolicy"))
				if err != nil {
					t.Fatalf("%s: %v", r.Name, err)
				}
				if len(sts) != 1 || len(sts[0].Principals) != 1 || !strings.HasPrefix(sts[0].Principals[0], "Service:") ||
					path(sts[0].Condition, "StringEquals.aws:SourceAccount") != mockAccount && !unconditionedTrust[sts[0].Principals[0]] {
					t.Errorf("%s: trust %+v", r.Name, sts)
				}
				managed := stringsOf(r.In["managedPolicyArns"])
				want, ok := awsManagedPolicies[r.Name]
				if len(managed) > 0 && (!ok || len(managed) != 1 || managed[0] != want) {
					t.Errorf("%s: managed policies %v", r.Name, managed)
				}
			}
		})
		t.Run(name+": the task role grants exactly the AWS calls registrar makes, on its own resources", func(t *testing.T) {
			got := grants(t, s, "task-policy")
			want := map[string]bool{}
			for _, a := range kinesisConsumerActions {
				want[a+" "+s.named(t, tStream, "stream-in").outStr("arn")] = true
			}
			for _, a := range kinesisProducerActions {
				want[a+" "+s.named(t, tStream, "stream-out").outStr("arn")] = true
			}
			for _, a := range streamKeyActions {
				want[a+" "+s.keyARN("stream")] = true
			}
			for _, a := range kekActions {
				want[a+" "+s.keyARN("kek")] = true
			}
			for _, a := range efsClientActions {
				want[a+" "+s.named(t, tFS, "files").outStr("arn")] = true
			}
			compareGrants(t, got, want)
			sts, _ := parsePolicy(s.named(t, tRolePolicy, "task-policy").str("policy"))
			for _, st := range sts {
				if st.Sid == "MountDocuments" && path(st.Condition, "StringEquals.elasticfilesystem:AccessPointArn") != s.named(t, tAccessPoint, "files-ap").outStr("arn") {
					t.Errorf("EFS access is not limited to the access point: %v", st.Condition)
				}
			}
		})
		t.Run(name+": the execution role pulls the image, writes its logs and reads exactly the injected secrets", func(t *testing.T) {
			got := grants(t, s, "execution-policy")
			logs := s.named(t, tLogGroup, "lg-app").outStr("arn") + ":log-stream:*"
			want := map[string]bool{
				"logs:CreateLogStream " + logs:                     true,
				"logs:PutLogEvents " + logs:                        true,
				"kms:Decrypt " + s.keyARN("secrets"):               true,
				"ecr:GetAuthorizationToken *":                      true,
				"secretsmanager:GetSecretValue " + mockDBSecretARN: true,
				"secretsmanager:GetSecretValue " + s.named(t, tSecret, "secret-redis-auth").outStr("arn"): true,
				"secretsmanager:GetSecretValue " + s.named(t, tSecret, "secret-keyset").outStr("arn"):     true,
			}
			repo := "arn:aws:ecr:us-east-1:111111111111:repository/registrar"
			for _, a := range []string{"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"} {
				want[a+" "+repo] = true
			}
			compareGrants(t, got, want)
		})
		t.Run(name+": only the task role (and named key operators) can use the KEK directly", func(t *testing.T) {
			sts, err := parsePolicy(s.named(t, tKey, "key-kek").str("policy"))
			if err != nil {
				t.Fatal(err)
			}
			allowed := map[string]bool{"AWS:" + s.named(t, tRole, "task-role").outStr("arn"): true}
			for _, a := range s.Cfg.KeyOperatorARNs {
				allowed["AWS:"+a] = true
			}
			for _, st := range sts {
				if st.Effect == "Allow" && (contains(st.Actions, "kms:Decrypt") || contains(st.Actions, "kms:Encrypt")) {
					for _, p := range st.Principals {
						if !allowed[p] {
							t.Errorf("KEK usable by %s", p)
						}
					}
				}
			}
		})
	}
}

// grants lists "action resource" pairs of a role policy's Allow statements.
func grants(t *testing.T, s *stack, policy string) map[string]bool {
	t.Helper()
	sts, err := parsePolicy(s.named(t, tRolePolicy, policy).str("policy"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, st := range sts {
		if st.Effect != "Allow" {
			t.Errorf("%s: unexpected %s statement", policy, st.Effect)
		}
		for _, a := range st.Actions {
			for _, r := range st.Resources {
				out[a+" "+r] = true
			}
		}
	}
	return out
}

func compareGrants(t *testing.T, got, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for g := range want {
		if !got[g] {
			missing = append(missing, g)
		}
	}
	for g := range got {
		if !want[g] {
			extra = append(extra, g)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("missing grants:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("grants beyond what registrar uses:\n  %s", strings.Join(extra, "\n  "))
	}
}

func TestKeysOnePerPurpose(t *testing.T) {
	purposes := []string{"cache", "database", "files", "kek", "logs", "secrets", "stream"}
	for _, name := range examples {
		t.Run(name+": one CMK per purpose, each with an alias and used where it belongs", func(t *testing.T) {
			s := deployExample(t, name)
			if got := len(s.of(tKey)); got != len(purposes) {
				t.Errorf("%d keys, want %d", got, len(purposes))
			}
			for _, p := range purposes {
				key := s.named(t, tKey, "key-"+p)
				alias := s.named(t, tAlias, "alias-"+p)
				if alias.str("targetKeyId") != key.ID || alias.str("name") != "alias/registrar/"+name+"/"+p {
					t.Errorf("alias of %s: %v", p, alias.In)
				}
			}
			for _, sec := range s.of(tSecret) {
				if sec.str("kmsKeyId") != s.keyARN("secrets") {
					t.Errorf("secret %s: key %q", sec.Name, sec.str("kmsKeyId"))
				}
			}
			db := s.named(t, tDBCluster, "db")
			if db.str("masterUserSecretKmsKeyId") != s.keyARN("secrets") {
				t.Errorf("RDS-managed secret key %q", db.str("masterUserSecretKmsKeyId"))
			}
			for _, i := range s.of(tDBInstance) {
				if i.str("performanceInsightsKmsKeyId") != s.keyARN("database") {
					t.Errorf("%s: Performance Insights key %q", i.Name, i.str("performanceInsightsKmsKeyId"))
				}
			}
			if s.named(t, tSNSTopic, "alarms").str("kmsMasterKeyId") != s.keyARN("logs") {
				t.Error("alarm topic is not encrypted with the logs key")
			}
		})
	}
}
