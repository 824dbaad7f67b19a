package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Resource type tokens the tests look at.
const (
	tVPC             = "aws:ec2/vpc:Vpc"
	tSubnet          = "aws:ec2/subnet:Subnet"
	tRoute           = "aws:ec2/route:Route"
	tRTA             = "aws:ec2/routeTableAssociation:RouteTableAssociation"
	tDefaultSG       = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
	tSG              = "aws:ec2/securityGroup:SecurityGroup"
	tSGRule          = "aws:ec2/securityGroupRule:SecurityGroupRule"
	tFlowLog         = "aws:ec2/flowLog:FlowLog"
	tEndpoint        = "aws:ec2/vpcEndpoint:VpcEndpoint"
	tNAT             = "aws:ec2/natGateway:NatGateway"
	tLogGroup        = "aws:cloudwatch/logGroup:LogGroup"
	tAlarm           = "aws:cloudwatch/metricAlarm:MetricAlarm"
	tKey             = "aws:kms/key:Key"
	tAlias           = "aws:kms/alias:Alias"
	tRole            = "aws:iam/role:Role"
	tRolePolicy      = "aws:iam/rolePolicy:RolePolicy"
	tIAMPolicy       = "aws:iam/policy:Policy"
	tDBCluster       = "aws:rds/cluster:Cluster"
	tDBInstance      = "aws:rds/clusterInstance:ClusterInstance"
	tDBParams        = "aws:rds/clusterParameterGroup:ClusterParameterGroup"
	tCache           = "aws:elasticache/replicationGroup:ReplicationGroup"
	tCacheSubnets    = "aws:elasticache/subnetGroup:SubnetGroup"
	tStream          = "aws:kinesis/stream:Stream"
	tFS              = "aws:efs/fileSystem:FileSystem"
	tAccessPoint     = "aws:efs/accessPoint:AccessPoint"
	tMountTarget     = "aws:efs/mountTarget:MountTarget"
	tBackupPolicy    = "aws:efs/backupPolicy:BackupPolicy"
	tFSPolicy        = "aws:efs/fileSystemPolicy:FileSystemPolicy"
	tSecret          = "aws:secretsmanager/secret:Secret"
	tSecretVersion   = "aws:secretsmanager/secretVersion:SecretVersion"
	tSecretRotation  = "aws:secretsmanager/secretRotation:SecretRotation"
	tLB              = "aws:lb/loadBalancer:LoadBalancer"
	tListener        = "aws:lb/listener:Listener"
	tTargetGroup     = "aws:lb/targetGroup:TargetGroup"
	tTGAttachment    = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
	tECSCluster      = "aws:ecs/cluster:Cluster"
	tTaskDef         = "aws:ecs/taskDefinition:TaskDefinition"
	tService         = "aws:ecs/service:Service"
	tScalingTarget   = "aws:appautoscaling/target:Target"
	tScalingPolicy   = "aws:appautoscaling/policy:Policy"
	tRestAPI         = "aws:apigateway/restApi:RestApi"
	tStage           = "aws:apigateway/stage:Stage"
	tMethod          = "aws:apigateway/method:Method"
	tIntegration     = "aws:apigateway/integration:Integration"
	tMethodSettings  = "aws:apigateway/methodSettings:MethodSettings"
	tDomain          = "aws:apigateway/domainName:DomainName"
	tDeployment      = "aws:apigateway/deployment:Deployment"
	tVPCLink         = "aws:apigateway/vpcLink:VpcLink"
	tWebACL          = "aws:wafv2/webAcl:WebAcl"
	tWebACLAssoc     = "aws:wafv2/webAclAssociation:WebAclAssociation"
	tBucketPolicy    = "aws:s3/bucketPolicy:BucketPolicy"
	tBucketSSE       = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
	tBucketPAB       = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
	tSNSTopic        = "aws:sns/topic:Topic"
	tWebACLLogging   = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
	tAPIGWAccount    = "aws:apigateway/account:Account"
	tBasePathMapping = "aws:apigateway/basePathMapping:BasePathMapping"
)

// findings collects violations of one check.
type findings []string

func (f *findings) add(format string, a ...any) { *f = append(*f, fmt.Sprintf(format, a...)) }

// none adds a finding when a check found nothing to check, so that a check can never
// pass vacuously.
func (f *findings) none(s *stack, typ string) bool {
	if len(s.of(typ)) == 0 {
		f.add("no %s in the stack", typ)
		return true
	}
	return false
}

// keyARN returns the ARN of the stack's key for a purpose ("database", ...).
func (s *stack) keyARN(purpose string) string {
	for _, r := range s.of(tKey) {
		if r.Name == "key-"+purpose {
			a, _ := r.Out["arn"].(string)
			return a
		}
	}
	return "<no " + purpose + " key>"
}

func (r *res) outStr(k string) string { s, _ := r.Out[k].(string); return s }

// container is the parsed container definition of a task definition.
func (r *res) container() (map[string]any, error) {
	var defs []map[string]any
	if err := json.Unmarshal([]byte(r.str("containerDefinitions")), &defs); err != nil {
		return nil, fmt.Errorf("%s: containerDefinitions: %w", r.Name, err)
	}
	if len(defs) != 1 {
		return nil, fmt.Errorf("%s: %d containers, want 1", r.Name, len(defs))
	}
	return defs[0], nil
}

// editContainer changes the container definition of every task definition (to break a
// control on purpose).
func (s *stack) editContainer(edit func(c map[string]any)) {
	for _, td := range s.of(tTaskDef) {
		c, err := td.container()
		if err != nil {
			panic(err)
		}
		edit(c)
		b, _ := json.Marshal([]any{c})
		td.In["containerDefinitions"] = string(b)
	}
}

// path follows dotted keys through nested objects; a numeric part indexes an array.
func path(v any, p string) any {
	for _, part := range strings.Split(p, ".") {
		switch t := v.(type) {
		case map[string]any:
			v = t[part]
		case []any:
			var i int
			if _, err := fmt.Sscan(part, &i); err != nil || i >= len(t) {
				return nil
			}
			v = t[i]
		default:
			return nil
		}
	}
	return v
}

// remove drops every resource of a type (to break a control on purpose).
func (s *stack) remove(typ string) {
	kept := s.All[:0]
	for _, r := range s.All {
		if r.Type != typ {
			kept = append(kept, r)
		}
	}
	s.All = kept
}

// add records an extra resource (to break a control on purpose).
func (s *stack) add(typ, name string, in map[string]any) {
	out := map[string]any{}
	for k, v := range in {
		out[k] = v
	}
	out["arn"] = "arn:aws:test:" + mockRegion + ":" + mockAccount + ":" + name
	s.All = append(s.All, &res{Type: typ, Name: name, ID: name + "-id", In: in, Out: out})
}

// statement is one policy statement, with Action, Resource and Principal normalized
// to lists.
type statement struct {
	Sid        string
	Effect     string
	Actions    []string
	Resources  []string
	Principals []string // "AWS:arn", "Service:name", "*"
	Condition  map[string]any
}

// parsePolicy reads a JSON policy document.
func parsePolicy(doc string) ([]statement, error) {
	var p struct {
		Statement []map[string]any
	}
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("policy is not JSON: %w", err)
	}
	if len(p.Statement) == 0 {
		return nil, fmt.Errorf("policy has no statements")
	}
	var out []statement
	for _, raw := range p.Statement {
		st := statement{Effect: fmt.Sprint(raw["Effect"]), Actions: stringsOf(raw["Action"]), Resources: stringsOf(raw["Resource"])}
		st.Sid, _ = raw["Sid"].(string)
		st.Condition, _ = raw["Condition"].(map[string]any)
		switch pr := raw["Principal"].(type) {
		case string:
			st.Principals = []string{pr}
		case map[string]any:
			for kind, v := range pr {
				for _, p := range stringsOf(v) {
					if p == "*" {
						st.Principals = append(st.Principals, "*")
					} else {
						st.Principals = append(st.Principals, kind+":"+p)
					}
				}
			}
		}
		if raw["NotAction"] != nil || raw["NotResource"] != nil || raw["NotPrincipal"] != nil {
			return nil, fmt.Errorf("statement %q uses Not*: not allowed here", st.Sid)
		}
		out = append(out, st)
	}
	return out, nil
}

func stringsOf(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
