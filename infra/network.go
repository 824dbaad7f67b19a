package main

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// network is the VPC: public subnets (NAT gateways only), private app subnets (load
// balancers, tasks, mount targets, VPC endpoints) and isolated data subnets (Aurora,
// Redis) with no route out of the VPC.
type network struct {
	VPC           *ec2.Vpc
	PublicSubnets []*ec2.Subnet
	AppSubnets    []*ec2.Subnet
	DataSubnets   []*ec2.Subnet
	AppSubnetIDs  pulumi.StringArray
	DataSubnetIDs pulumi.StringArray
	SG            securityGroups
}

// securityGroups has one group per tier. The rules between them (securityGroupRules)
// are the only paths in the VPC.
type securityGroups struct {
	NLB, ALB, Tasks, Database, Cache, Files, Endpoints *ec2.SecurityGroup
}

// splitCIDR returns the subnet plan of a /16: public /24s at x.x.0-2.0, app /20s at
// x.x.16/32/48.0 and data /24s at x.x.128-130.0.
func splitCIDR(vpc string) (plan [3][3]string, err error) {
	p, err := netip.ParsePrefix(vpc)
	if err != nil || !p.Addr().Is4() || p.Bits() != 16 || p.Masked() != p {
		return plan, fmt.Errorf("%q: want an IPv4 /16 such as 10.40.0.0/16", vpc)
	}
	b := p.Addr().As4()
	for az := 0; az < 3; az++ {
		plan[0][az] = fmt.Sprintf("%d.%d.%d.0/24", b[0], b[1], az)
		plan[1][az] = fmt.Sprintf("%d.%d.%d.0/20", b[0], b[1], 16*(az+1))
		plan[2][az] = fmt.Sprintf("%d.%d.%d.0/24", b[0], b[1], 128+az)
	}
	return plan, nil
}

func (d *deployer) network() (*network, error) {
	ctx, cfg := d.ctx, d.cfg
	plan, err := splitCIDR(cfg.VPCCIDR)
	if err != nil {
		return nil, err
	}
	n := &network{}
	n.VPC, err = ec2.NewVpc(ctx, "vpc", &ec2.VpcArgs{
		CidrBlock:          pulumi.String(cfg.VPCCIDR),
		EnableDnsSupport:   pulumi.Bool(true), // interface endpoints' private DNS
		EnableDnsHostnames: pulumi.Bool(true),
		Tags:               d.tags("vpc"),
	})
	if err != nil {
		return nil, err
	}

	// EC2.2: take over the default security group and leave it without rules.
	if _, err := ec2.NewDefaultSecurityGroup(ctx, "default-sg", &ec2.DefaultSecurityGroupArgs{
		VpcId: n.VPC.ID(),
		Tags:  d.tags("default-no-rules"),
	}); err != nil {
		return nil, err
	}

	igw, err := ec2.NewInternetGateway(ctx, "igw", &ec2.InternetGatewayArgs{VpcId: n.VPC.ID(), Tags: d.tags("igw")})
	if err != nil {
		return nil, err
	}
	publicRT, err := ec2.NewRouteTable(ctx, "rt-public", &ec2.RouteTableArgs{VpcId: n.VPC.ID(), Tags: d.tags("public")})
	if err != nil {
		return nil, err
	}
	if _, err := ec2.NewRoute(ctx, "rt-public-default", &ec2.RouteArgs{
		RouteTableId:         publicRT.ID(),
		DestinationCidrBlock: pulumi.String("0.0.0.0/0"),
		GatewayId:            igw.ID(),
	}); err != nil {
		return nil, err
	}
	dataRT, err := ec2.NewRouteTable(ctx, "rt-data", &ec2.RouteTableArgs{VpcId: n.VPC.ID(), Tags: d.tags("data-isolated")})
	if err != nil {
		return nil, err
	}

	subnet := func(tier string, az int, cidr string) (*ec2.Subnet, error) {
		name := fmt.Sprintf("%s-%s", tier, d.azs[az])
		return ec2.NewSubnet(ctx, "subnet-"+name, &ec2.SubnetArgs{
			VpcId:               n.VPC.ID(),
			CidrBlock:           pulumi.String(cidr),
			AvailabilityZone:    pulumi.String(d.azs[az]),
			MapPublicIpOnLaunch: pulumi.Bool(false), // EC2.15: nothing here gets a public IP by default
			Tags:                d.tagsWith(name, map[string]string{"tier": tier}),
		})
	}
	associate := func(name string, s *ec2.Subnet, rt *ec2.RouteTable) error {
		_, err := ec2.NewRouteTableAssociation(ctx, name, &ec2.RouteTableAssociationArgs{SubnetId: s.ID(), RouteTableId: rt.ID()})
		return err
	}

	var nats []*ec2.NatGateway
	natCount := 1
	if cfg.NATPerAZ {
		natCount = cfg.AZCount
	}
	var appRTs []*ec2.RouteTable
	for az := 0; az < cfg.AZCount; az++ {
		pub, err := subnet("public", az, plan[0][az])
		if err != nil {
			return nil, err
		}
		if err := associate(fmt.Sprintf("rta-public-%d", az), pub, publicRT); err != nil {
			return nil, err
		}
		n.PublicSubnets = append(n.PublicSubnets, pub)
		if az < natCount {
			eip, err := ec2.NewEip(ctx, fmt.Sprintf("nat-eip-%d", az), &ec2.EipArgs{Domain: pulumi.String("vpc"), Tags: d.tags(fmt.Sprintf("nat-%d", az))})
			if err != nil {
				return nil, err
			}
			nat, err := ec2.NewNatGateway(ctx, fmt.Sprintf("nat-%d", az), &ec2.NatGatewayArgs{
				AllocationId: eip.ID(),
				SubnetId:     pub.ID(),
				Tags:         d.tags(fmt.Sprintf("nat-%d", az)),
			}, pulumi.DependsOn([]pulumi.Resource{igw}))
			if err != nil {
				return nil, err
			}
			nats = append(nats, nat)
		}

		app, err := subnet("app", az, plan[1][az])
		if err != nil {
			return nil, err
		}
		rt, err := ec2.NewRouteTable(ctx, fmt.Sprintf("rt-app-%d", az), &ec2.RouteTableArgs{VpcId: n.VPC.ID(), Tags: d.tags(fmt.Sprintf("app-%d", az))})
		if err != nil {
			return nil, err
		}
		if _, err := ec2.NewRoute(ctx, fmt.Sprintf("rt-app-%d-default", az), &ec2.RouteArgs{
			RouteTableId:         rt.ID(),
			DestinationCidrBlock: pulumi.String("0.0.0.0/0"),
			NatGatewayId:         nats[az%len(nats)].ID(),
		}); err != nil {
			return nil, err
		}
		if err := associate(fmt.Sprintf("rta-app-%d", az), app, rt); err != nil {
			return nil, err
		}
		appRTs = append(appRTs, rt)
		n.AppSubnets = append(n.AppSubnets, app)
		n.AppSubnetIDs = append(n.AppSubnetIDs, app.ID().ToStringOutput())

		data, err := subnet("data", az, plan[2][az])
		if err != nil {
			return nil, err
		}
		if err := associate(fmt.Sprintf("rta-data-%d", az), data, dataRT); err != nil {
			return nil, err
		}
		n.DataSubnets = append(n.DataSubnets, data)
		n.DataSubnetIDs = append(n.DataSubnetIDs, data.ID().ToStringOutput())
	}

	if err := d.flowLogs(n); err != nil {
		return nil, err
	}
	if n.SG, err = d.securityGroups(n); err != nil {
		return nil, err
	}
	if err := d.endpoints(n, appRTs); err != nil {
		return nil, err
	}
	return n, nil
}

// flowLogs sends every accepted and rejected flow of the VPC to an encrypted log group
// (EC2.6).
func (d *deployer) flowLogs(n *network) error {
	lg, err := d.logGroup("flow-logs", pulumi.String("/registrar/"+d.cfg.Stack+"/vpc-flow-logs"))
	if err != nil {
		return err
	}
	role, err := iam.NewRole(d.ctx, "flow-logs-role", &iam.RoleArgs{
		Name:             pulumi.String(d.name("flow-logs")),
		AssumeRolePolicy: toJSON(d.trust("vpc-flow-logs.amazonaws.com")),
		Tags:             d.tags("flow-logs"),
	})
	if err != nil {
		return err
	}
	if _, err := iam.NewRolePolicy(d.ctx, "flow-logs-policy", &iam.RolePolicyArgs{
		Role: role.Name,
		Policy: toJSON(policy(obj{
			"Sid":      "WriteFlowLogs",
			"Effect":   "Allow",
			"Action":   strs("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"),
			"Resource": strs(lg.Arn, lg.Arn.ApplyT(func(a string) string { return a + ":*" }).(pulumi.StringOutput)),
		})),
	}); err != nil {
		return err
	}
	_, err = ec2.NewFlowLog(d.ctx, "flow-log", &ec2.FlowLogArgs{
		VpcId:                  n.VPC.ID(),
		TrafficType:            pulumi.String("ALL"),
		LogDestinationType:     pulumi.String("cloud-watch-logs"),
		LogDestination:         lg.Arn,
		IamRoleArn:             role.Arn,
		MaxAggregationInterval: pulumi.Int(60),
		Tags:                   d.tags("flow-log"),
	})
	return err
}

// securityGroups creates the groups without inline rules, then the only rules of the
// system: gateway (through the VPC link, i.e. PrivateLink) -> NLB -> ALB -> tasks ->
// {database, cache, EFS, VPC endpoints}, each on its one port, plus the tasks' HTTPS
// egress to the internet through NAT for the district's OIDC issuer (discovery, JWKS).
func (d *deployer) securityGroups(n *network) (securityGroups, error) {
	var sg securityGroups
	group := func(name, desc string) (*ec2.SecurityGroup, error) {
		// No inline ingress or egress: the provider removes AWS's default allow-all egress
		// rule, so a group starts closed and only securityGroupRules open it.
		return ec2.NewSecurityGroup(d.ctx, "sg-"+name, &ec2.SecurityGroupArgs{
			Name:        pulumi.String(d.name(name)),
			Description: pulumi.String(desc),
			VpcId:       n.VPC.ID(),
			Tags:        d.tags(name),
		})
	}
	var err error
	for _, g := range []struct {
		dst        **ec2.SecurityGroup
		name, desc string
	}{
		{&sg.NLB, "nlb", "registrar NLB: reached only through the API Gateway VPC link"},
		{&sg.ALB, "alb", "registrar internal ALB: HTTPS from the NLB"},
		{&sg.Tasks, "tasks", "registrar ECS tasks: HTTPS from the ALB"},
		{&sg.Database, "database", "registrar Aurora: PostgreSQL from the tasks"},
		{&sg.Cache, "cache", "registrar Redis: TLS from the tasks"},
		{&sg.Files, "files", "registrar EFS mount targets: NFS from the tasks"},
		{&sg.Endpoints, "endpoints", "registrar VPC interface endpoints: HTTPS from the tasks"},
	} {
		if *g.dst, err = group(g.name, g.desc); err != nil {
			return sg, err
		}
	}

	// link opens one port from one group to another: egress on the source, ingress on
	// the destination.
	link := func(name string, from, to *ec2.SecurityGroup, port int) error {
		if _, err := ec2.NewSecurityGroupRule(d.ctx, "sgr-"+name+"-out", &ec2.SecurityGroupRuleArgs{
			Type:                  pulumi.String("egress"),
			SecurityGroupId:       from.ID(),
			SourceSecurityGroupId: to.ID(),
			Protocol:              pulumi.String("tcp"),
			FromPort:              pulumi.Int(port),
			ToPort:                pulumi.Int(port),
			Description:           pulumi.String(name),
		}); err != nil {
			return err
		}
		_, err := ec2.NewSecurityGroupRule(d.ctx, "sgr-"+name+"-in", &ec2.SecurityGroupRuleArgs{
			Type:                  pulumi.String("ingress"),
			SecurityGroupId:       to.ID(),
			SourceSecurityGroupId: from.ID(),
			Protocol:              pulumi.String("tcp"),
			FromPort:              pulumi.Int(port),
			ToPort:                pulumi.Int(port),
			Description:           pulumi.String(name),
		})
		return err
	}
	for _, l := range []struct {
		name     string
		from, to *ec2.SecurityGroup
		port     int
	}{
		{"nlb-to-alb", sg.NLB, sg.ALB, httpsPort},
		{"alb-to-tasks", sg.ALB, sg.Tasks, listenPort},
		{"tasks-to-database", sg.Tasks, sg.Database, postgresPort},
		{"tasks-to-cache", sg.Tasks, sg.Cache, redisPort},
		{"tasks-to-files", sg.Tasks, sg.Files, nfsPort},
		{"tasks-to-endpoints", sg.Tasks, sg.Endpoints, httpsPort},
	} {
		if err := link(l.name, l.from, l.to, l.port); err != nil {
			return sg, err
		}
	}
	_, err = ec2.NewSecurityGroupRule(d.ctx, "sgr-tasks-to-internet-out", &ec2.SecurityGroupRuleArgs{
		Type:            pulumi.String("egress"),
		SecurityGroupId: sg.Tasks.ID(),
		CidrBlocks:      pulumi.StringArray{pulumi.String("0.0.0.0/0")},
		Protocol:        pulumi.String("tcp"),
		FromPort:        pulumi.Int(httpsPort),
		ToPort:          pulumi.Int(httpsPort),
		Description:     pulumi.String("HTTPS through NAT to the district's OIDC issuer"),
	})
	return sg, err
}

// endpointServices are the AWS APIs that the tasks and the ECS agent call, reached
// through interface endpoints so that secrets, keys, records events and logs never
// leave the VPC.
var endpointServices = []string{"secretsmanager", "kms", "kinesis-streams", "logs", "ecr.api", "ecr.dkr"}

func (d *deployer) endpoints(n *network, appRTs []*ec2.RouteTable) error {
	for _, svc := range endpointServices {
		if _, err := ec2.NewVpcEndpoint(d.ctx, "vpce-"+svc, &ec2.VpcEndpointArgs{
			VpcId:             n.VPC.ID(),
			ServiceName:       pulumi.Sprintf("com.amazonaws.%s.%s", d.cfg.Region, svc),
			VpcEndpointType:   pulumi.String("Interface"),
			PrivateDnsEnabled: pulumi.Bool(true),
			SubnetIds:         n.AppSubnetIDs,
			SecurityGroupIds:  pulumi.StringArray{n.SG.Endpoints.ID()},
			Tags:              d.tags("vpce-" + svc),
		}); err != nil {
			return err
		}
	}
	var rts pulumi.StringArray
	for _, rt := range appRTs {
		rts = append(rts, rt.ID())
	}
	// ECR image layers are in S3: a gateway endpoint keeps image pulls off the NAT.
	_, err := ec2.NewVpcEndpoint(d.ctx, "vpce-s3", &ec2.VpcEndpointArgs{
		VpcId:           n.VPC.ID(),
		ServiceName:     pulumi.Sprintf("com.amazonaws.%s.s3", d.cfg.Region),
		VpcEndpointType: pulumi.String("Gateway"),
		RouteTableIds:   rts,
		Tags:            d.tags("vpce-s3"),
	})
	return err
}

// logGroup creates an encrypted log group with the stack's retention (CloudWatch.16).
// Log groups that AWS services would otherwise create on their own, unencrypted and
// kept forever (RDS exports, API Gateway execution logs), are created here first under
// the name the service uses.
func (d *deployer) logGroup(resource string, name pulumi.StringInput) (*cloudwatch.LogGroup, error) {
	return cloudwatch.NewLogGroup(d.ctx, "lg-"+resource, &cloudwatch.LogGroupArgs{
		Name:            name,
		RetentionInDays: pulumi.Int(d.cfg.LogRetentionDays),
		KmsKeyId:        d.keys.Logs.Arn,
		Tags:            d.tags(resource),
	})
}
