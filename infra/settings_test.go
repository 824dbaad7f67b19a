package main

import (
	"net/url"
	"sort"
	"strings"
	"testing"

	"registrar/config"
)

// envOf returns a task definition's environment and secrets as maps.
func envOf(t *testing.T, td *res) (env, secrets map[string]string, c map[string]any) {
	t.Helper()
	c, err := td.container()
	if err != nil {
		t.Fatal(err)
	}
	env, secrets = map[string]string{}, map[string]string{}
	for _, e := range c["environment"].([]any) {
		m := e.(map[string]any)
		env[m["name"].(string)] = m["value"].(string)
	}
	for _, e := range c["secrets"].([]any) {
		m := e.(map[string]any)
		secrets[m["name"].(string)] = m["valueFrom"].(string)
	}
	return env, secrets, c
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func minus(all []string, excluded map[string]string) []string {
	var out []string
	for _, k := range all {
		if _, ok := excluded[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func TestTaskSettingsAreExactlyWhatRegistrarReads(t *testing.T) {
	plain, secret := config.EnvKeys()
	for _, name := range examples {
		s := deployExample(t, name)
		for _, td := range s.of(tTaskDef) {
			t.Run(name+"/"+td.Name+": environment and secrets are config's keys minus the named exclusions", func(t *testing.T) {
				env, secrets, _ := envOf(t, td)
				if got, want := strings.Join(keysOf(env), " "), strings.Join(minus(plain, excludedSettings), " "); got != want {
					t.Errorf("environment:\n got  %s\n want %s", got, want)
				}
				if got, want := strings.Join(keysOf(secrets), " "), strings.Join(minus(secret, excludedSettings), " "); got != want {
					t.Errorf("secrets:\n got  %s\n want %s", got, want)
				}
			})
			t.Run(name+"/"+td.Name+": every injected secret exists and only those are readable by the execution role", func(t *testing.T) {
				_, secrets, _ := envOf(t, td)
				existing := map[string]bool{mockDBSecretARN: true} // RDS creates this one
				for _, sec := range s.of(tSecret) {
					existing[sec.outStr("arn")] = true
				}
				injected := map[string]bool{}
				for k, from := range secrets {
					arn := secretARN(from)
					if !existing[arn] {
						t.Errorf("%s: secret %s does not exist in the stack", k, arn)
					}
					injected[arn] = true
				}
				if got := secrets["REGISTRAR_DATABASE_PASSWORD"]; got != mockDBSecretARN+":password::" {
					t.Errorf("database password from %q, want the RDS-managed secret's password key", got)
				}
				sts, err := parsePolicy(s.named(t, tRolePolicy, "execution-policy").str("policy"))
				if err != nil {
					t.Fatal(err)
				}
				readable := map[string]bool{}
				for _, st := range sts {
					if contains(st.Actions, "secretsmanager:GetSecretValue") {
						for _, r := range st.Resources {
							readable[r] = true
						}
					}
				}
				if len(readable) != len(injected) {
					t.Errorf("execution role reads %v, tasks inject %v", readable, injected)
				}
				for arn := range injected {
					if !readable[arn] {
						t.Errorf("execution role cannot read injected secret %s", arn)
					}
				}
			})
			t.Run(name+"/"+td.Name+": values point at the stack's resources and registrar's config accepts them", func(t *testing.T) {
				env, secrets, c := envOf(t, td)
				db := s.named(t, tDBCluster, "db")
				check := func(k, want string) {
					t.Helper()
					if env[k] != want {
						t.Errorf("%s = %q, want %q", k, env[k], want)
					}
				}
				for k, host := range map[string]string{"REGISTRAR_DATABASE_URL": db.outStr("endpoint"), "REGISTRAR_DATABASE_READER_URL": db.outStr("readerEndpoint")} {
					u, err := url.Parse(env[k])
					if err != nil || u.Scheme != "postgres" || u.Hostname() != host || u.Port() != "5432" ||
						u.Query().Get("sslmode") != "verify-full" || u.User.Username() != s.Cfg.DBUsername || u.Path != "/"+s.Cfg.DBName {
						t.Errorf("%s = %q, want postgres://%s@%s:5432/%s?sslmode=verify-full", k, env[k], s.Cfg.DBUsername, host, s.Cfg.DBName)
					}
					if _, hasPassword := u.User.Password(); hasPassword {
						t.Errorf("%s carries a password", k)
					}
				}
				check("REGISTRAR_DATABASE_CA_FILE", databaseCAFile)
				check("REGISTRAR_REDIS_ADDR", s.named(t, tCache, "cache").outStr("primaryEndpointAddress")+":6379")
				check("REGISTRAR_REDIS_TLS", "true")
				check("REGISTRAR_KINESIS_IN", s.named(t, tStream, "stream-in").str("name"))
				check("REGISTRAR_KINESIS_OUT", s.named(t, tStream, "stream-out").str("name"))
				check("REGISTRAR_AWS_REGION", s.Cfg.Region)
				check("REGISTRAR_KEK_URI", "aws-kms://"+s.keyARN("kek"))
				check("REGISTRAR_TLS_SELF_SIGNED", "true")
				check("REGISTRAR_ADDR", "0.0.0.0:8443")
				check("REGISTRAR_BASE_URL", "https://"+s.Cfg.APIDomain)
				check("REGISTRAR_OIDC_ISSUER", s.Cfg.OIDCIssuer)
				check("REGISTRAR_OIDC_AUDIENCE", s.Cfg.OIDCAudience)
				mounts := map[string]string{}
				for _, m := range c["mountPoints"].([]any) {
					mm := m.(map[string]any)
					mounts[mm["sourceVolume"].(string)] = mm["containerPath"].(string)
				}
				check("REGISTRAR_DOCUMENTS_DIR", mounts["documents"])
				check("REGISTRAR_DATA", mounts["data"])

				// The binary's own loader must accept the task's settings as they are.
				getenv := func(k string) string {
					if v, ok := env[k]; ok {
						return v
					}
					if _, ok := secrets[k]; ok {
						return "secret-value"
					}
					return ""
				}
				cfg, err := config.Load(nil, nil, getenv)
				if err != nil {
					t.Fatalf("registrar's config rejects the task's settings: %v", err)
				}
				if err := cfg.ValidateListen(); err != nil {
					t.Errorf("registrar would refuse to listen: %v", err)
				}
			})
		}
	}
}

func TestExclusionsAreNamedAndReal(t *testing.T) {
	known := map[string]bool{}
	for _, st := range config.Settings {
		known[st.Env] = true
	}
	for k, why := range excludedSettings {
		if !known[k] {
			t.Errorf("excluded %s is not a registrar setting", k)
		}
		if len(why) < 20 {
			t.Errorf("excluded %s has no real reason: %q", k, why)
		}
	}
}

func TestANewConfigKeyFailsUntilInfraDecides(t *testing.T) {
	saved := config.Settings
	defer func() { config.Settings = saved }()
	config.Settings = append(append([]config.Setting{}, saved...), config.Setting{Name: "new-thing", Env: "REGISTRAR_NEW_THING", Help: "added to config later"})

	if _, _, err := taskSettings(deployExample(t, "dev").Cfg, taskResources{}); err == nil || !strings.Contains(err.Error(), "REGISTRAR_NEW_THING") {
		t.Errorf("taskSettings: got %v, want an error naming REGISTRAR_NEW_THING", err)
	}
	if _, err := deployWithMocks("dev", deployExample(t, "dev").Cfg); err == nil || !strings.Contains(err.Error(), "REGISTRAR_NEW_THING") {
		t.Errorf("Deploy: got %v, want an error naming REGISTRAR_NEW_THING", err)
	}

	config.Settings = append(append([]config.Setting{}, saved...), config.Setting{Name: "new-secret", Env: "REGISTRAR_NEW_SECRET", Secret: true})
	if _, _, err := taskSettings(deployExample(t, "dev").Cfg, taskResources{}); err == nil || !strings.Contains(err.Error(), "REGISTRAR_NEW_SECRET") {
		t.Errorf("a new secret setting: got %v, want an error naming it", err)
	}
}

func TestCheckSettingsCoveredCatchesMisplacedSecrets(t *testing.T) {
	env, secrets, err := taskSettings(deployExample(t, "dev").Cfg, taskResources{})
	if err != nil {
		t.Fatal(err)
	}
	env["REGISTRAR_KEYSET"] = "plaintext"
	delete(secrets, "REGISTRAR_KEYSET")
	if err := checkSettingsCovered(env, secrets); err == nil || !strings.Contains(err.Error(), "REGISTRAR_KEYSET is a secret") {
		t.Errorf("got %v, want an error about REGISTRAR_KEYSET in the environment", err)
	}
}
