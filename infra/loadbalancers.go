package main

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The listener TLS policy: TLS 1.3 and 1.2 with forward-secret AEAD ciphers only
// (ELB.17's recommended policy).
const tlsPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// loadBalancers are the internal path from the gateway to the tasks. A REST API's
// private integration (VPC link) can only target a Network Load Balancer, so the NLB
// passes TCP 443 through to the internal ALB, which terminates TLS (the gateway's
// connection is TLS end to end to the ALB, verified against OriginDomain) and speaks
// HTTPS to the tasks. Everything HTTP-aware (invalid header dropping, access logs,
// request-count scaling, health checks) is on the ALB.
type loadBalancers struct {
	ALB         *lb.LoadBalancer
	NLB         *lb.LoadBalancer
	TargetGroup *lb.TargetGroup
	Listener    *lb.Listener
	LogBucket   *s3.BucketV2
}

func (d *deployer) loadBalancers(n *network) (*loadBalancers, error) {
	ctx, cfg := d.ctx, d.cfg
	l := &loadBalancers{}
	bucketPolicy, err := d.accessLogBucket(l)
	if err != nil {
		return nil, err
	}
	l.ALB, err = lb.NewLoadBalancer(ctx, "alb", &lb.LoadBalancerArgs{
		Name:                     pulumi.String(d.name("alb")),
		LoadBalancerType:         pulumi.String("application"),
		Internal:                 pulumi.Bool(true),
		Subnets:                  n.AppSubnetIDs,
		SecurityGroups:           pulumi.StringArray{n.SG.ALB.ID()},
		DropInvalidHeaderFields:  pulumi.Bool(true), // ELB.4
		DesyncMitigationMode:     pulumi.String("strictest"),
		EnableDeletionProtection: pulumi.Bool(cfg.DeletionProtection),
		EnableHttp2:              pulumi.Bool(true),
		IdleTimeout:              pulumi.Int(60),
		AccessLogs: &lb.LoadBalancerAccessLogsArgs{
			Bucket:  l.LogBucket.Bucket,
			Prefix:  pulumi.String("alb"),
			Enabled: pulumi.Bool(true),
		},
		Tags: d.tags("alb"),
	}, pulumi.DependsOn([]pulumi.Resource{bucketPolicy}))
	if err != nil {
		return nil, err
	}
	l.TargetGroup, err = lb.NewTargetGroup(ctx, "tg-tasks", &lb.TargetGroupArgs{
		Name:                pulumi.String(d.name("tasks")),
		TargetType:          pulumi.String("ip"),
		Protocol:            pulumi.String("HTTPS"),
		Port:                pulumi.Int(listenPort),
		VpcId:               n.VPC.ID(),
		DeregistrationDelay: pulumi.Int(30),
		HealthCheck: &lb.TargetGroupHealthCheckArgs{
			Enabled:            pulumi.Bool(true),
			Protocol:           pulumi.String("HTTPS"),
			Path:               pulumi.String(healthCheckPath),
			Matcher:            pulumi.String("200"),
			Interval:           pulumi.Int(15),
			Timeout:            pulumi.Int(5),
			HealthyThreshold:   pulumi.Int(2),
			UnhealthyThreshold: pulumi.Int(3),
		},
		Tags: d.tags("tasks"),
	})
	if err != nil {
		return nil, err
	}
	l.Listener, err = lb.NewListener(ctx, "alb-https", &lb.ListenerArgs{
		LoadBalancerArn: l.ALB.Arn,
		Port:            pulumi.Int(httpsPort),
		Protocol:        pulumi.String("HTTPS"),
		SslPolicy:       pulumi.String(tlsPolicy),
		CertificateArn:  pulumi.String(cfg.CertificateARN),
		DefaultActions: lb.ListenerDefaultActionArray{&lb.ListenerDefaultActionArgs{
			Type:           pulumi.String("forward"),
			TargetGroupArn: l.TargetGroup.Arn,
		}},
		Tags: d.tags("alb-https"),
	})
	if err != nil {
		return nil, err
	}

	l.NLB, err = lb.NewLoadBalancer(ctx, "nlb", &lb.LoadBalancerArgs{
		Name:                         pulumi.String(d.name("nlb")),
		LoadBalancerType:             pulumi.String("network"),
		Internal:                     pulumi.Bool(true),
		Subnets:                      n.AppSubnetIDs,
		EnableCrossZoneLoadBalancing: pulumi.Bool(true),
		EnableDeletionProtection:     pulumi.Bool(cfg.DeletionProtection),
		// The NLB's group has no ingress rule: the only traffic it takes is the VPC
		// link's, which arrives over PrivateLink and is exempted here. Nothing else in
		// the VPC can reach the ALB around the gateway.
		SecurityGroups: pulumi.StringArray{n.SG.NLB.ID()},
		EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic: pulumi.String("off"),
		Tags: d.tags("nlb"),
	})
	if err != nil {
		return nil, err
	}
	nlbTG, err := lb.NewTargetGroup(ctx, "tg-alb", &lb.TargetGroupArgs{
		Name:       pulumi.String(d.name("alb")),
		TargetType: pulumi.String("alb"),
		Protocol:   pulumi.String("TCP"),
		Port:       pulumi.Int(httpsPort),
		VpcId:      n.VPC.ID(),
		HealthCheck: &lb.TargetGroupHealthCheckArgs{
			Enabled:  pulumi.Bool(true),
			Protocol: pulumi.String("HTTPS"),
			Path:     pulumi.String(healthCheckPath),
			Matcher:  pulumi.String("200"),
		},
		Tags: d.tags("alb-target"),
	})
	if err != nil {
		return nil, err
	}
	if _, err := lb.NewTargetGroupAttachment(ctx, "tg-alb-attachment", &lb.TargetGroupAttachmentArgs{
		TargetGroupArn: nlbTG.Arn,
		TargetId:       l.ALB.Arn,
		Port:           pulumi.Int(httpsPort),
	}, pulumi.DependsOn([]pulumi.Resource{l.Listener})); err != nil {
		return nil, err
	}
	if _, err := lb.NewListener(ctx, "nlb-tcp", &lb.ListenerArgs{
		LoadBalancerArn: l.NLB.Arn,
		Port:            pulumi.Int(httpsPort),
		Protocol:        pulumi.String("TCP"), // TLS passes through to the ALB untouched
		DefaultActions: lb.ListenerDefaultActionArray{&lb.ListenerDefaultActionArgs{
			Type:           pulumi.String("forward"),
			TargetGroupArn: nlbTG.Arn,
		}},
		Tags: d.tags("nlb-tcp"),
	}); err != nil {
		return nil, err
	}
	return l, nil
}

// accessLogBucket is the ALB's access log bucket. ALB log delivery supports only SSE-S3
// (not KMS), so the bucket is SSE-S3, private, TLS-only and expires logs after the
// stack's log retention.
func (d *deployer) accessLogBucket(l *loadBalancers) (pulumi.Resource, error) {
	ctx, cfg := d.ctx, d.cfg
	var err error
	l.LogBucket, err = s3.NewBucketV2(ctx, "alb-logs", &s3.BucketV2Args{
		Bucket:       pulumi.String(d.name("alb-logs-" + d.account + "-" + cfg.Region)),
		ForceDestroy: pulumi.Bool(!cfg.DeletionProtection),
		Tags:         d.tags("alb-logs"),
	})
	if err != nil {
		return nil, err
	}
	b := l.LogBucket.ID()
	pab, err := s3.NewBucketPublicAccessBlock(ctx, "alb-logs-pab", &s3.BucketPublicAccessBlockArgs{
		Bucket:                b,
		BlockPublicAcls:       pulumi.Bool(true),
		BlockPublicPolicy:     pulumi.Bool(true),
		IgnorePublicAcls:      pulumi.Bool(true),
		RestrictPublicBuckets: pulumi.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketOwnershipControls(ctx, "alb-logs-ownership", &s3.BucketOwnershipControlsArgs{
		Bucket: b,
		Rule:   &s3.BucketOwnershipControlsRuleArgs{ObjectOwnership: pulumi.String("BucketOwnerEnforced")},
	}); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, "alb-logs-sse", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: b,
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{&s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("AES256"),
			},
		}},
	}); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketVersioningV2(ctx, "alb-logs-versioning", &s3.BucketVersioningV2Args{
		Bucket:                  b,
		VersioningConfiguration: &s3.BucketVersioningV2VersioningConfigurationArgs{Status: pulumi.String("Enabled")},
	}); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketLifecycleConfigurationV2(ctx, "alb-logs-lifecycle", &s3.BucketLifecycleConfigurationV2Args{
		Bucket: b,
		Rules: s3.BucketLifecycleConfigurationV2RuleArray{&s3.BucketLifecycleConfigurationV2RuleArgs{
			Id:     pulumi.String("expire-access-logs"),
			Status: pulumi.String("Enabled"),
			Filter: &s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String("")},
			Expiration: &s3.BucketLifecycleConfigurationV2RuleExpirationArgs{
				Days: pulumi.Int(cfg.LogRetentionDays),
			},
			NoncurrentVersionExpiration: &s3.BucketLifecycleConfigurationV2RuleNoncurrentVersionExpirationArgs{
				NoncurrentDays: pulumi.Int(1),
			},
		}},
	}); err != nil {
		return nil, err
	}
	// Regions from before August 2022 deliver ALB logs from a regional ELB account;
	// newer ones from a service principal. Allow both, for this prefix only.
	elbAccount, err := elb.GetServiceAccount(ctx, &elb.GetServiceAccountArgs{Region: pulumi.StringRef(cfg.Region)})
	if err != nil {
		return nil, err
	}
	logPrefix := l.LogBucket.Arn.ApplyT(func(a string) string { return a + "/alb/AWSLogs/" + d.account + "/*" }).(pulumi.StringOutput)
	return s3.NewBucketPolicy(ctx, "alb-logs-policy", &s3.BucketPolicyArgs{
		Bucket: b,
		Policy: toJSON(policy(
			obj{
				"Sid":       "ELBDeliversAccessLogs",
				"Effect":    "Allow",
				"Principal": obj{"AWS": elbAccount.Arn},
				"Action":    strs("s3:PutObject"),
				"Resource":  strs(logPrefix),
			},
			obj{
				"Sid":       "ELBLogDeliveryService",
				"Effect":    "Allow",
				"Principal": obj{"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
				"Action":    strs("s3:PutObject"),
				"Resource":  strs(logPrefix),
			},
			obj{
				"Sid":       "DenyWithoutTLS",
				"Effect":    "Deny",
				"Principal": obj{"AWS": "*"},
				"Action":    strs("s3:*"),
				"Resource":  strs(l.LogBucket.Arn, l.LogBucket.Arn.ApplyT(func(a string) string { return a + "/*" }).(pulumi.StringOutput)),
				"Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}},
			},
		)),
	}, pulumi.DependsOn([]pulumi.Resource{pab}))
}
