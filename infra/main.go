// Command infra is the Pulumi program that deploys registrar on AWS: API Gateway with
// WAF in front of an internal load balancer, ECS Fargate, Aurora PostgreSQL Serverless
// v2, ElastiCache Redis, Kinesis, EFS, Secrets Manager and one KMS key per purpose, in
// a multi-AZ VPC. See docs/deploy-aws.md.
//
// It is its own Go module so that the service's build and tests never compile the AWS
// SDK; it imports registrar/config (and nothing else of registrar) to derive the task's
// environment and secrets from the settings the binary reads.
package main

import (
	"encoding/json"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg, err := LoadStackConfig(ctx.Stack(), ctx.GetConfig, configKeys())
		if err != nil {
			return err
		}
		out, err := Deploy(ctx, cfg)
		if err != nil {
			return err
		}
		export(ctx, out)
		return nil
	})
}

// configKeys lists the stack's configuration keys, which the engine passes to the
// program as JSON in PULUMI_CONFIG, so that unknown keys (typos) can be refused.
func configKeys() []string {
	var m map[string]any
	if err := json.Unmarshal([]byte(os.Getenv("PULUMI_CONFIG")), &m); err != nil {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func export(ctx *pulumi.Context, o *Outputs) {
	ctx.Export("apiUrl", o.APIURL)
	ctx.Export("apiGatewayDomain", o.APIGatewayDomain)
	ctx.Export("loadBalancer", o.LoadBalancer)
	ctx.Export("networkLoadBalancer", o.NetworkLoadBalancer)
	ctx.Export("cluster", o.Cluster)
	ctx.Export("service", o.Service)
	ctx.Export("taskDefinition", o.TaskDefinition)
	ctx.Export("databaseWriterEndpoint", o.DatabaseWriter)
	ctx.Export("databaseReaderEndpoint", o.DatabaseReader)
	ctx.Export("databaseSecretArn", o.DatabaseSecretARN)
	ctx.Export("cacheEndpoint", o.CacheEndpoint)
	ctx.Export("streamIn", o.StreamIn)
	ctx.Export("streamOut", o.StreamOut)
	ctx.Export("fileSystemId", o.FileSystemID)
	ctx.Export("accessPointId", o.AccessPointID)
	ctx.Export("kekUri", o.KEKURI)
	ctx.Export("keysetSecretArn", o.KeysetSecretARN)
	aliases := pulumi.StringMap{}
	for k, v := range o.KeyAliases {
		aliases[k] = v
	}
	ctx.Export("keyAliases", aliases)
	ctx.Export("alarmTopic", o.AlarmTopic)
	ctx.Export("accessLogBucket", o.AccessLogBucket)
	ctx.Export("privateAppSubnetIds", o.PrivateAppSubnetIDs)
	ctx.Export("taskSecurityGroupId", o.TaskSecurityGroupID)
	ctx.Export("executionRoleArn", o.ExecutionRoleARN)
	ctx.Export("taskRoleArn", o.TaskRoleARN)
}
