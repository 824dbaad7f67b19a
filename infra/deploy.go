package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Outputs are what an operator needs after `pulumi up`; main exports each one.
type Outputs struct {
	APIURL              pulumi.StringOutput
	APIGatewayDomain    pulumi.StringOutput // target for the API domain's DNS record
	LoadBalancer        pulumi.StringOutput // internal ALB DNS name
	NetworkLoadBalancer pulumi.StringOutput
	Cluster             pulumi.StringOutput
	Service             pulumi.StringOutput
	DatabaseWriter      pulumi.StringOutput
	DatabaseReader      pulumi.StringOutput
	DatabaseSecretARN   pulumi.StringOutput
	CacheEndpoint       pulumi.StringOutput
	StreamIn            pulumi.StringOutput
	StreamOut           pulumi.StringOutput
	FileSystemID        pulumi.StringOutput
	AccessPointID       pulumi.StringOutput
	KEKURI              pulumi.StringOutput
	KeysetSecretARN     pulumi.StringOutput
	KeyAliases          map[string]pulumi.StringOutput
	AlarmTopic          pulumi.StringOutput
	TaskDefinition      pulumi.StringOutput
	AccessLogBucket     pulumi.StringOutput
	PrivateAppSubnetIDs pulumi.StringArrayOutput
	TaskSecurityGroupID pulumi.StringOutput
	ExecutionRoleARN    pulumi.StringOutput
	TaskRoleARN         pulumi.StringOutput
}

// deployer carries what every part of the program needs.
type deployer struct {
	ctx       *pulumi.Context
	cfg       StackConfig
	account   string
	partition string
	azs       []string
	keys      *keys
}

// Deploy creates the whole system for one stack. It is the unit the tests run with
// mocks, so it takes its configuration as a value instead of reading it.
func Deploy(ctx *pulumi.Context, cfg StackConfig) (*Outputs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stack config: %w", err)
	}
	// Decide on every registrar setting before creating anything.
	if _, _, err := taskSettings(cfg, taskResources{}); err != nil {
		return nil, fmt.Errorf("task settings: %w", err)
	}
	d := &deployer{ctx: ctx, cfg: cfg}
	id, err := aws.GetCallerIdentity(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("caller identity: %w", err)
	}
	d.account = id.AccountId
	part, err := aws.GetPartition(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	d.partition = part.Partition
	azs, err := aws.GetAvailabilityZones(ctx, &aws.GetAvailabilityZonesArgs{State: pulumi.StringRef("available")})
	if err != nil {
		return nil, fmt.Errorf("availability zones: %w", err)
	}
	if len(azs.Names) < cfg.AZCount {
		return nil, fmt.Errorf("region %s has %d available AZs, the stack wants %d", cfg.Region, len(azs.Names), cfg.AZCount)
	}
	names := append([]string(nil), azs.Names...)
	sort.Strings(names)
	d.azs = names[:cfg.AZCount]

	r, err := d.roles()
	if err != nil {
		return nil, fmt.Errorf("roles: %w", err)
	}
	if d.keys, err = d.createKeys(r); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	n, err := d.network()
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	data, err := d.dataServices(n)
	if err != nil {
		return nil, fmt.Errorf("data services: %w", err)
	}
	if err := d.rolePolicies(r, data); err != nil {
		return nil, fmt.Errorf("role policies: %w", err)
	}
	lbs, err := d.loadBalancers(n)
	if err != nil {
		return nil, fmt.Errorf("load balancers: %w", err)
	}
	svc, err := d.service(n, r, data, lbs)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if err := d.rotation(data, svc); err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	edge, err := d.gateway(lbs)
	if err != nil {
		return nil, fmt.Errorf("api gateway: %w", err)
	}
	topic, err := d.alarms(edge, data, lbs)
	if err != nil {
		return nil, fmt.Errorf("alarms: %w", err)
	}

	return &Outputs{
		APIURL:              pulumi.Sprintf("https://%s", cfg.APIDomain),
		APIGatewayDomain:    edge.Domain.RegionalDomainName,
		LoadBalancer:        lbs.ALB.DnsName,
		NetworkLoadBalancer: lbs.NLB.DnsName,
		Cluster:             svc.Cluster.Name,
		Service:             svc.API.Name,
		DatabaseWriter:      data.DB.Endpoint,
		DatabaseReader:      data.DB.ReaderEndpoint,
		DatabaseSecretARN:   data.DBSecretARN,
		CacheEndpoint:       data.Cache.PrimaryEndpointAddress,
		StreamIn:            data.StreamIn.Name,
		StreamOut:           data.StreamOut.Name,
		FileSystemID:        data.Files.ID().ToStringOutput(),
		AccessPointID:       data.AccessPoint.ID().ToStringOutput(),
		KEKURI:              pulumi.Sprintf("aws-kms://%s", d.keys.KEK.Arn),
		KeysetSecretARN:     data.KeysetSecret.Arn,
		KeyAliases:          d.keys.Aliases,
		AlarmTopic:          topic.Arn,
		TaskDefinition:      svc.TaskDefinition.Arn,
		AccessLogBucket:     lbs.LogBucket.Bucket,
		PrivateAppSubnetIDs: n.AppSubnetIDs.ToStringArrayOutput(),
		TaskSecurityGroupID: n.SG.Tasks.ID().ToStringOutput(),
		ExecutionRoleARN:    r.Execution.Arn,
		TaskRoleARN:         r.Task.Arn,
	}, nil
}

// name is the AWS-visible name of a resource of this stack.
func (d *deployer) name(s string) string { return "registrar-" + d.cfg.Stack + "-" + s }

// arn builds an ARN in this account; region is "" for global services.
func (d *deployer) arn(service, region, resource string) string {
	return strings.Join([]string{"arn", d.partition, service, region, d.account, resource}, ":")
}

func (d *deployer) tags(name string) pulumi.StringMap { return d.tagsWith(name, nil) }

func (d *deployer) tagsWith(name string, extra map[string]string) pulumi.StringMap {
	m := pulumi.StringMap{
		"Name":        pulumi.String(d.name(name)),
		"app":         pulumi.String("registrar"),
		"stack":       pulumi.String(d.cfg.Stack),
		"data-class":  pulumi.String("ferpa-education-records"),
		"managed-by":  pulumi.String("pulumi"),
		"environment": pulumi.String(d.cfg.Stack),
	}
	for k, v := range extra {
		m[k] = pulumi.String(v)
	}
	return m
}

// serviceTrust is an assume-role policy for an AWS service that does not pass the
// calling account to STS (Lambda, API Gateway's logging role).
func (d *deployer) serviceTrust(service string) obj {
	return policy(obj{
		"Effect":    "Allow",
		"Principal": obj{"Service": service},
		"Action":    strs("sts:AssumeRole"),
	})
}

// trust is an assume-role policy for one AWS service principal, limited to this
// account (confused-deputy protection).
func (d *deployer) trust(service string) obj {
	return policy(obj{
		"Effect":    "Allow",
		"Principal": obj{"Service": service},
		"Action":    strs("sts:AssumeRole"),
		"Condition": obj{"StringEquals": obj{"aws:SourceAccount": d.account}},
	})
}
