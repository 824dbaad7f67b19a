package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"
)

const (
	mockAccount = "123456789012"
	mockRegion  = "us-east-1"
	// mockDBSecretARN is what RDS would name the master user secret it manages.
	mockDBSecretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-0a1b2c3d-AbCdEf"
)

// res is one recorded resource: its type token, logical name, the inputs the program
// gave it (as plain JSON values, secrets unwrapped) and the mock's outputs.
type res struct {
	Type   string
	Name   string
	ID     string
	In     map[string]any
	Out    map[string]any
	Secret map[string]bool // input keys whose value was marked secret
}

// recorder is a pulumi mock that keeps every resource's inputs and invents plausible
// outputs (ARNs, endpoints) for the ones the program reads back.
type recorder struct {
	mu  sync.Mutex
	all []*res
}

func (m *recorder) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	in := plainMap(args.Inputs)
	secret := map[string]bool{}
	for k, v := range args.Inputs {
		if v.ContainsSecrets() {
			secret[string(k)] = true
		}
	}
	id := args.Name + "-id"
	out := map[string]any{}
	for k, v := range in {
		out[k] = v
	}
	svc := strings.SplitN(strings.TrimPrefix(args.TypeToken, "aws:"), "/", 2)[0]
	str := func(k string) string { s, _ := in[k].(string); return s }
	out["arn"] = fmt.Sprintf("arn:aws:%s:%s:%s:%s/%s", svc, mockRegion, mockAccount, svc, args.Name)
	switch args.TypeToken {
	case "aws:iam/role:Role":
		out["arn"] = "arn:aws:iam::" + mockAccount + ":role/" + str("name")
	case "aws:kms/key:Key":
		id = "key-" + args.Name
		out["keyId"] = id
		out["arn"] = "arn:aws:kms:" + mockRegion + ":" + mockAccount + ":key/" + id
	case "aws:kms/alias:Alias":
		out["arn"] = "arn:aws:kms:" + mockRegion + ":" + mockAccount + ":" + str("name")
	case "aws:cloudwatch/logGroup:LogGroup":
		out["arn"] = "arn:aws:logs:" + mockRegion + ":" + mockAccount + ":log-group:" + str("name")
	case "aws:secretsmanager/secret:Secret":
		out["arn"] = "arn:aws:secretsmanager:" + mockRegion + ":" + mockAccount + ":secret:" + str("name") + "-AbCdEf"
	case "aws:kinesis/stream:Stream":
		out["arn"] = "arn:aws:kinesis:" + mockRegion + ":" + mockAccount + ":stream/" + str("name")
	case "aws:efs/fileSystem:FileSystem":
		id = "fs-" + args.Name
		out["arn"] = "arn:aws:elasticfilesystem:" + mockRegion + ":" + mockAccount + ":file-system/" + id
	case "aws:efs/accessPoint:AccessPoint":
		id = "fsap-" + args.Name
		out["arn"] = "arn:aws:elasticfilesystem:" + mockRegion + ":" + mockAccount + ":access-point/" + id
	case "aws:rds/cluster:Cluster":
		cid := str("clusterIdentifier")
		out["endpoint"] = cid + ".cluster-c0ffee.us-east-1.rds.amazonaws.com"
		out["readerEndpoint"] = cid + ".cluster-ro-c0ffee.us-east-1.rds.amazonaws.com"
		out["masterUserSecrets"] = []any{map[string]any{"secretArn": mockDBSecretARN, "kmsKeyId": in["masterUserSecretKmsKeyId"], "secretStatus": "active"}}
		out["arn"] = "arn:aws:rds:" + mockRegion + ":" + mockAccount + ":cluster:" + cid
	case "aws:elasticache/replicationGroup:ReplicationGroup":
		out["primaryEndpointAddress"] = "master." + str("replicationGroupId") + ".c0ffee.use1.cache.amazonaws.com"
	case "aws:lb/loadBalancer:LoadBalancer":
		out["dnsName"] = "internal-" + str("name") + ".us-east-1.elb.amazonaws.com"
		out["arnSuffix"] = "app/" + str("name") + "/0123456789"
	case "aws:lb/targetGroup:TargetGroup":
		out["arnSuffix"] = "targetgroup/" + str("name") + "/0123456789"
	case "aws:apigateway/restApi:RestApi":
		id = "a1b2c3d4e5"
		out["rootResourceId"] = "rootres"
	case "aws:apigateway/stage:Stage":
		out["arn"] = "arn:aws:apigateway:" + mockRegion + "::/restapis/a1b2c3d4e5/stages/" + str("stageName")
	case "aws:apigateway/domainName:DomainName":
		out["regionalDomainName"] = "d-0123456789.execute-api.us-east-1.amazonaws.com"
		out["regionalZoneId"] = "Z1UJRXOUMOOFQ8"
	}
	r := &res{Type: args.TypeToken, Name: args.Name, ID: id, In: in, Out: out, Secret: secret}
	m.mu.Lock()
	m.all = append(m.all, r)
	m.mu.Unlock()
	return id, resource.NewPropertyMapFromMap(out), nil
}

func (m *recorder) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	switch args.Token {
	case "aws:index/getCallerIdentity:getCallerIdentity":
		return resource.NewPropertyMapFromMap(map[string]any{
			"accountId": mockAccount, "arn": "arn:aws:iam::" + mockAccount + ":user/deployer", "userId": "AIDA", "id": mockAccount,
		}), nil
	case "aws:index/getPartition:getPartition":
		return resource.NewPropertyMapFromMap(map[string]any{"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}), nil
	case "aws:index/getAvailabilityZones:getAvailabilityZones":
		return resource.NewPropertyMapFromMap(map[string]any{
			"names": []any{"us-east-1c", "us-east-1a", "us-east-1b", "us-east-1d"}, "id": mockRegion,
		}), nil
	case "aws:elb/getServiceAccount:getServiceAccount":
		return resource.NewPropertyMapFromMap(map[string]any{"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}), nil
	}
	return nil, fmt.Errorf("mock: unexpected call %s", args.Token)
}

// plainMap turns recorded inputs into JSON-like Go values, unwrapping secrets and
// outputs, so that tests can compare them and deep-copy them.
func plainMap(pm resource.PropertyMap) map[string]any {
	m := map[string]any{}
	for k, v := range pm {
		m[string(k)] = plainValue(v)
	}
	return m
}

func plainValue(v resource.PropertyValue) any {
	switch {
	case v.IsNull():
		return nil
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		a := []any{}
		for _, e := range v.ArrayValue() {
			a = append(a, plainValue(e))
		}
		return a
	case v.IsObject():
		return plainMap(v.ObjectValue())
	case v.IsSecret():
		return plainValue(v.SecretValue().Element)
	case v.IsOutput():
		if !v.OutputValue().Known {
			return "<unknown>"
		}
		return plainValue(v.OutputValue().Element)
	case v.IsComputed():
		return "<unknown>"
	case v.IsResourceReference():
		return string(v.ResourceReferenceValue().URN)
	default:
		return fmt.Sprintf("<%s>", v.TypeString())
	}
}

// stack is one recorded deployment.
type stack struct {
	Name string
	Cfg  StackConfig
	All  []*res
}

// copy returns a deep copy, for tests that break a control on purpose.
func (s *stack) copy(t *testing.T) *stack {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var c stack
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// of returns the recorded resources of one type, in registration-independent order.
func (s *stack) of(typ string) []*res {
	var out []*res
	for _, r := range s.All {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// named returns the resource of a type with a logical name, or fails the test.
func (s *stack) named(t *testing.T, typ, name string) *res {
	t.Helper()
	for _, r := range s.of(typ) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("%s: no %s named %q", s.Name, typ, name)
	return nil
}

// byID finds a resource by the ID or ARN the mock gave it.
func (s *stack) byID(id string) *res {
	for _, r := range s.All {
		if r.ID == id || r.Out["arn"] == id {
			return r
		}
	}
	return nil
}

func (r *res) str(k string) string  { s, _ := r.In[k].(string); return s }
func (r *res) flag(k string) bool   { b, _ := r.In[k].(bool); return b }
func (r *res) num(k string) float64 { n, _ := r.In[k].(float64); return n }
func (r *res) obj(k string) map[string]any {
	m, _ := r.In[k].(map[string]any)
	return m
}
func (r *res) arr(k string) []any { a, _ := r.In[k].([]any); return a }

// jsonIn parses an input that is a JSON document (policies, container definitions).
func (r *res) jsonIn(t *testing.T, k string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.str(k)), v); err != nil {
		t.Fatalf("%s %s: input %s is not JSON: %v", r.Type, r.Name, k, err)
	}
}

// loadExample reads infra/Pulumi.<name>.yaml the way Pulumi hands config to the
// program: every value a string, structured values as JSON.
func loadExample(t testing.TB, name string) StackConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(".", "Pulumi."+name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatalf("Pulumi.%s.yaml: %v", name, err)
	}
	values := map[string]string{}
	var keys []string
	for k, v := range file.Config {
		keys = append(keys, k)
		switch x := v.(type) {
		case string:
			values[k] = x
		case bool:
			values[k] = strconv.FormatBool(x)
		case int:
			values[k] = strconv.Itoa(x)
		case float64:
			values[k] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			j, err := json.Marshal(x)
			if err != nil {
				t.Fatalf("Pulumi.%s.yaml: %s: %v", name, k, err)
			}
			values[k] = string(j)
		}
	}
	cfg, err := LoadStackConfig(name, func(k string) (string, bool) { v, ok := values[k]; return v, ok }, keys)
	if err != nil {
		t.Fatalf("Pulumi.%s.yaml: %v", name, err)
	}
	return cfg
}

var (
	deployedMu sync.Mutex
	deployed   = map[string]*stack{}
)

// deployExample runs Deploy with the recording mock on an example stack, once per test
// binary.
func deployExample(t *testing.T, name string) *stack {
	t.Helper()
	deployedMu.Lock()
	defer deployedMu.Unlock()
	if s, ok := deployed[name]; ok {
		return s
	}
	var cfg StackConfig
	if name == "prodworker" {
		// The prod example with `registrar worker` as a second service.
		cfg = loadExample(t, "prod")
		cfg.Stack, cfg.SeparateWorker, cfg.WorkerCount = name, true, 2
	} else {
		cfg = loadExample(t, name)
	}
	s, err := deployWithMocks(name, cfg)
	if err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
	deployed[name] = s
	return s
}

func deployWithMocks(name string, cfg StackConfig) (*stack, error) {
	rec := &recorder{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		out, err := Deploy(ctx, cfg)
		if err != nil {
			return err
		}
		export(ctx, out)
		return nil
	}, pulumi.WithMocks("registrar", name, rec))
	if err != nil {
		return nil, err
	}
	return &stack{Name: name, Cfg: cfg, All: rec.all}, nil
}

// examples are the stacks every control is asserted on: the two example files, and prod
// with a separate worker service.
var examples = []string{"dev", "prod", "prodworker"}
