package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/apigateway"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/wafv2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// stageName is the one stage of the REST API; the custom domain maps to it at "/".
const stageName = "live"

// gatewayRoutes are the routes of the REST API: everything, to the one origin.
// registrar authenticates each request itself (OAuth2 bearer tokens, OIDC), so the
// methods have no gateway authorizer; the gateway adds WAF, throttling, logging and the
// public TLS edge.
var gatewayRoutes = []struct{ Path, Method, Target string }{
	{"/", "ANY", "/"},
	{"/{proxy+}", "ANY", "/{proxy}"},
}

// edge is the public entry point.
type edge struct {
	API    *apigateway.RestApi
	Stage  *apigateway.Stage
	Domain *apigateway.DomainName
	WebACL *wafv2.WebAcl
}

func (d *deployer) gateway(lbs *loadBalancers) (*edge, error) {
	ctx, cfg := d.ctx, d.cfg
	e := &edge{}
	var err error
	var deps []pulumi.Resource
	if cfg.ManageAPIGatewayAccount {
		// Execution logging needs the region's API Gateway account to have a CloudWatch
		// role. There is one per account and region; a second stack in the same account
		// and region sets manageApiGatewayAccount: false.
		role, err := iam.NewRole(ctx, "apigw-logs-role", &iam.RoleArgs{
			Name:              pulumi.String(d.name("apigw-logs")),
			AssumeRolePolicy:  toJSON(d.serviceTrust("apigateway.amazonaws.com")),
			ManagedPolicyArns: pulumi.StringArray{pulumi.String("arn:" + d.partition + ":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs")},
			Tags:              d.tags("apigw-logs"),
		})
		if err != nil {
			return nil, err
		}
		acct, err := apigateway.NewAccount(ctx, "apigw-account", &apigateway.AccountArgs{CloudwatchRoleArn: role.Arn})
		if err != nil {
			return nil, err
		}
		deps = append(deps, acct)
	}

	link, err := apigateway.NewVpcLink(ctx, "vpc-link", &apigateway.VpcLinkArgs{
		Name:      pulumi.String(d.name("vpc-link")),
		TargetArn: lbs.NLB.Arn,
		Tags:      d.tags("vpc-link"),
	})
	if err != nil {
		return nil, err
	}
	e.API, err = apigateway.NewRestApi(ctx, "api", &apigateway.RestApiArgs{
		Name:        pulumi.String(d.name("api")),
		Description: pulumi.String("registrar: FERPA student records API"),
		EndpointConfiguration: &apigateway.RestApiEndpointConfigurationArgs{
			Types: pulumi.String("REGIONAL"),
		},
		// Only the custom domain (TLS 1.2+) serves the API.
		DisableExecuteApiEndpoint: pulumi.Bool(true),
		// Proxy integrations pass bodies through untouched (documents, CSV).
		BinaryMediaTypes: pulumi.StringArray{pulumi.String("*/*")},
		Tags:             d.tags("api"),
	})
	if err != nil {
		return nil, err
	}

	proxy, err := apigateway.NewResource(ctx, "api-proxy", &apigateway.ResourceArgs{
		RestApi:  e.API.ID(),
		ParentId: e.API.RootResourceId,
		PathPart: pulumi.String("{proxy+}"),
	})
	if err != nil {
		return nil, err
	}
	var routeDeps []pulumi.Resource
	for i, r := range gatewayRoutes {
		resourceID := e.API.RootResourceId
		methodParams := pulumi.BoolMap{}
		integrationParams := pulumi.StringMap{}
		if r.Path != "/" {
			resourceID = proxy.ID().ToStringOutput()
			methodParams["method.request.path.proxy"] = pulumi.Bool(true)
			integrationParams["integration.request.path.proxy"] = pulumi.String("method.request.path.proxy")
		}
		name := []string{"root", "proxy"}[i]
		m, err := apigateway.NewMethod(ctx, "api-method-"+name, &apigateway.MethodArgs{
			RestApi:           e.API.ID(),
			ResourceId:        resourceID,
			HttpMethod:        pulumi.String(r.Method),
			Authorization:     pulumi.String("NONE"), // registrar validates every token itself
			RequestParameters: methodParams,
		})
		if err != nil {
			return nil, err
		}
		in, err := apigateway.NewIntegration(ctx, "api-integration-"+name, &apigateway.IntegrationArgs{
			RestApi:               e.API.ID(),
			ResourceId:            resourceID,
			HttpMethod:            m.HttpMethod,
			Type:                  pulumi.String("HTTP_PROXY"),
			IntegrationHttpMethod: pulumi.String("ANY"),
			// TLS to the ALB, whose certificate the gateway verifies for OriginDomain.
			Uri:                 pulumi.String("https://" + cfg.OriginDomain + r.Target),
			ConnectionType:      pulumi.String("VPC_LINK"),
			ConnectionId:        link.ID(),
			RequestParameters:   integrationParams,
			TimeoutMilliseconds: pulumi.Int(29000),
		})
		if err != nil {
			return nil, err
		}
		routeDeps = append(routeDeps, m, in)
	}

	// A new deployment whenever the routes or their target change.
	hash, err := routesHash(cfg.OriginDomain)
	if err != nil {
		return nil, err
	}
	dep, err := apigateway.NewDeployment(ctx, "api-deployment", &apigateway.DeploymentArgs{
		RestApi:     e.API.ID(),
		Description: pulumi.String("registrar routes " + hash[:16]),
		Triggers: pulumi.StringMap{
			"redeployment": pulumi.String(hash),
			"vpcLink":      link.ID(),
		},
	}, pulumi.DependsOn(routeDeps))
	if err != nil {
		return nil, err
	}

	accessLogs, err := d.logGroup("apigw-access", pulumi.String("/registrar/"+cfg.Stack+"/api-gateway-access"))
	if err != nil {
		return nil, err
	}
	// API Gateway writes execution logs to this group; creating it first makes it
	// encrypted and bounded.
	execLogs, err := d.logGroup("apigw-execution", pulumi.Sprintf("API-Gateway-Execution-Logs_%s/%s", e.API.ID(), stageName))
	if err != nil {
		return nil, err
	}
	e.Stage, err = apigateway.NewStage(ctx, "api-stage", &apigateway.StageArgs{
		RestApi:             e.API.ID(),
		Deployment:          dep.ID(),
		StageName:           pulumi.String(stageName),
		XrayTracingEnabled:  pulumi.Bool(true), // APIGateway.3
		CacheClusterEnabled: pulumi.Bool(false),
		AccessLogSettings: &apigateway.StageAccessLogSettingsArgs{
			DestinationArn: accessLogs.Arn,
			Format:         pulumi.String(accessLogFormat),
		},
		Tags: d.tags("api-stage"),
	}, pulumi.DependsOn(append(deps, execLogs)))
	if err != nil {
		return nil, err
	}
	if _, err := apigateway.NewMethodSettings(ctx, "api-method-settings", &apigateway.MethodSettingsArgs{
		RestApi:    e.API.ID(),
		StageName:  e.Stage.StageName,
		MethodPath: pulumi.String("*/*"),
		Settings: &apigateway.MethodSettingsSettingsArgs{
			// APIGateway.1. ERROR, not INFO, and no data trace: OneRoster filters put
			// names in query strings, and request data must not reach the logs.
			LoggingLevel:         pulumi.String("ERROR"),
			DataTraceEnabled:     pulumi.Bool(false),
			MetricsEnabled:       pulumi.Bool(true),
			ThrottlingRateLimit:  pulumi.Float64(cfg.ThrottleRateLimit),
			ThrottlingBurstLimit: pulumi.Int(cfg.ThrottleBurstLimit),
			// No response cache (responses are per principal); were it turned on, it
			// would be encrypted (APIGateway.5).
			CachingEnabled:     pulumi.Bool(false),
			CacheDataEncrypted: pulumi.Bool(true),
		},
	}); err != nil {
		return nil, err
	}

	e.Domain, err = apigateway.NewDomainName(ctx, "api-domain", &apigateway.DomainNameArgs{
		DomainName:             pulumi.String(cfg.APIDomain),
		RegionalCertificateArn: pulumi.String(cfg.CertificateARN),
		EndpointConfiguration:  &apigateway.DomainNameEndpointConfigurationArgs{Types: pulumi.String("REGIONAL")},
		SecurityPolicy:         pulumi.String("TLS_1_2"),
		Tags:                   d.tags("api-domain"),
	})
	if err != nil {
		return nil, err
	}
	if _, err := apigateway.NewBasePathMapping(ctx, "api-mapping", &apigateway.BasePathMappingArgs{
		RestApi:    e.API.ID(),
		StageName:  e.Stage.StageName,
		DomainName: e.Domain.DomainName,
	}); err != nil {
		return nil, err
	}
	if cfg.HostedZoneID != "" {
		if _, err := route53.NewRecord(ctx, "api-dns", &route53.RecordArgs{
			ZoneId: pulumi.String(cfg.HostedZoneID),
			Name:   pulumi.String(cfg.APIDomain),
			Type:   pulumi.String("A"),
			Aliases: route53.RecordAliasArray{&route53.RecordAliasArgs{
				Name:                 e.Domain.RegionalDomainName,
				ZoneId:               e.Domain.RegionalZoneId,
				EvaluateTargetHealth: pulumi.Bool(false),
			}},
		}); err != nil {
			return nil, err
		}
	}
	if err := d.waf(e); err != nil {
		return nil, err
	}
	return e, nil
}

// routesHash identifies the routes and their origin; the deployment is replaced when it
// changes, so that route changes reach the stage.
func routesHash(origin string) (string, error) {
	b, err := json.Marshal(struct {
		Routes any
		Origin string
	}{gatewayRoutes, origin})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// accessLogFormat is one JSON line per request, without query strings, bodies or
// credentials.
const accessLogFormat = `{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","time":"$context.requestTimeEpoch",` +
	`"method":"$context.httpMethod","resource":"$context.resourcePath","status":"$context.status",` +
	`"responseLength":"$context.responseLength","latency":"$context.responseLatency",` +
	`"integrationLatency":"$context.integration.latency","wafStatus":"$context.waf.status","xrayTraceId":"$context.xrayTraceId"}`

// managedRuleGroups are the AWS managed rule groups in front of registrar, with the
// rules switched to count where they would block legitimate traffic.
var managedRuleGroups = []struct {
	Name  string
	Count []string
}{
	// The common set blocks bodies over 8 KB; registrar takes JSON bodies up to
	// REGISTRAR_MAX_BODY and enforces that limit itself.
	{"AWSManagedRulesCommonRuleSet", []string{"SizeRestrictions_BODY"}},
	{"AWSManagedRulesKnownBadInputsRuleSet", nil},
	{"AWSManagedRulesSQLiRuleSet", nil},
}

func (d *deployer) waf(e *edge) error {
	ctx, cfg := d.ctx, d.cfg
	visibility := func(metric string) *wafv2.WebAclRuleVisibilityConfigArgs {
		return &wafv2.WebAclRuleVisibilityConfigArgs{
			CloudwatchMetricsEnabled: pulumi.Bool(true),
			MetricName:               pulumi.String(metric),
			// Sampled requests would show headers (bearer tokens) in the console.
			SampledRequestsEnabled: pulumi.Bool(false),
		}
	}
	rules := wafv2.WebAclRuleArray{&wafv2.WebAclRuleArgs{
		Name:     pulumi.String("RateLimitPerIP"),
		Priority: pulumi.Int(0),
		Action:   &wafv2.WebAclRuleActionArgs{Block: &wafv2.WebAclRuleActionBlockArgs{}},
		Statement: &wafv2.WebAclRuleStatementArgs{
			RateBasedStatement: &wafv2.WebAclRuleStatementRateBasedStatementArgs{
				Limit:            pulumi.Int(cfg.WAFRateLimit),
				AggregateKeyType: pulumi.String("IP"),
			},
		},
		VisibilityConfig: visibility("RateLimitPerIP"),
	}}
	for i, g := range managedRuleGroups {
		var overrides wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideArray
		for _, name := range g.Count {
			overrides = append(overrides, &wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideArgs{
				Name: pulumi.String(name),
				ActionToUse: &wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideActionToUseArgs{
					Count: &wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideActionToUseCountArgs{},
				},
			})
		}
		rules = append(rules, &wafv2.WebAclRuleArgs{
			Name:           pulumi.String(g.Name),
			Priority:       pulumi.Int(i + 1),
			OverrideAction: &wafv2.WebAclRuleOverrideActionArgs{None: &wafv2.WebAclRuleOverrideActionNoneArgs{}},
			Statement: &wafv2.WebAclRuleStatementArgs{
				ManagedRuleGroupStatement: &wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs{
					VendorName:          pulumi.String("AWS"),
					Name:                pulumi.String(g.Name),
					RuleActionOverrides: overrides,
				},
			},
			VisibilityConfig: visibility(g.Name),
		})
	}
	var err error
	e.WebACL, err = wafv2.NewWebAcl(ctx, "waf", &wafv2.WebAclArgs{
		Name:          pulumi.String(d.name("api")),
		Description:   pulumi.String("registrar API: managed common, bad-inputs and SQLi rules, per-IP rate limit"),
		Scope:         pulumi.String("REGIONAL"),
		DefaultAction: &wafv2.WebAclDefaultActionArgs{Allow: &wafv2.WebAclDefaultActionAllowArgs{}},
		Rules:         rules,
		VisibilityConfig: &wafv2.WebAclVisibilityConfigArgs{
			CloudwatchMetricsEnabled: pulumi.Bool(true),
			MetricName:               pulumi.String(d.name("api")),
			SampledRequestsEnabled:   pulumi.Bool(false),
		},
		Tags: d.tags("waf"),
	})
	if err != nil {
		return err
	}
	if _, err := wafv2.NewWebAclAssociation(ctx, "waf-association", &wafv2.WebAclAssociationArgs{
		ResourceArn: e.Stage.Arn, // APIGateway.4
		WebAclArn:   e.WebACL.Arn,
	}); err != nil {
		return err
	}
	// WAF requires its log group's name to start with aws-waf-logs-.
	logs, err := d.logGroup("waf", pulumi.String("aws-waf-logs-"+d.name("api")))
	if err != nil {
		return err
	}
	_, err = wafv2.NewWebAclLoggingConfiguration(ctx, "waf-logging", &wafv2.WebAclLoggingConfigurationArgs{
		ResourceArn:           e.WebACL.Arn,
		LogDestinationConfigs: pulumi.StringArray{logs.Arn},
		RedactedFields: wafv2.WebAclLoggingConfigurationRedactedFieldArray{
			&wafv2.WebAclLoggingConfigurationRedactedFieldArgs{SingleHeader: &wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs{Name: pulumi.String("authorization")}},
			&wafv2.WebAclLoggingConfigurationRedactedFieldArgs{SingleHeader: &wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs{Name: pulumi.String("cookie")}},
			&wafv2.WebAclLoggingConfigurationRedactedFieldArgs{QueryString: &wafv2.WebAclLoggingConfigurationRedactedFieldQueryStringArgs{}},
		},
	})
	return err
}
