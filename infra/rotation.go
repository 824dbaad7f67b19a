package main

import (
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lambda"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// rotation makes Secrets Manager rotate the Redis AUTH token with the rotator function
// (infra/rotator), and redeploys the tasks when RDS rotates the database secret, so
// that no secret a task holds goes stale. The keyset secret is registrar's own and is
// rotated with `registrar keys rotate` (docs/deploy-aws.md).
func (d *deployer) rotation(ds *dataServices, svc *ecsService) error {
	ctx, cfg := d.ctx, d.cfg
	fnName := d.name("rotator")
	logs, err := d.logGroup("rotator", pulumi.String("/aws/lambda/"+fnName))
	if err != nil {
		return err
	}
	role, err := iam.NewRole(ctx, "rotator-role", &iam.RoleArgs{
		Name:             pulumi.String(fnName),
		Description:      pulumi.String("registrar's secret rotator: the Redis AUTH secret, the replication group, the ECS services"),
		AssumeRolePolicy: toJSON(d.serviceTrust("lambda.amazonaws.com")),
		Tags:             d.tags("rotator"),
	})
	if err != nil {
		return err
	}
	serviceNames := []string{d.name("serve")}
	if svc.Worker != nil {
		serviceNames = append(serviceNames, d.name("worker"))
	}
	var serviceARNs list
	for _, name := range serviceNames {
		serviceARNs = append(serviceARNs, d.arn("ecs", cfg.Region, "service/"+d.name("cluster")+"/"+name))
	}
	if _, err := iam.NewRolePolicy(ctx, "rotator-policy", &iam.RolePolicyArgs{
		Name: pulumi.String("registrar-rotator"),
		Role: role.Name,
		Policy: toJSON(policy(
			obj{"Sid": "RotateTheRedisSecret", "Effect": "Allow",
				"Action":   strs("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"),
				"Resource": strs(ds.RedisSecret.Arn)},
			obj{"Sid": "GenerateTokens", "Effect": "Allow",
				"Action": strs("secretsmanager:GetRandomPassword"),
				// GetRandomPassword has no resource type: AWS requires "*".
				"Resource": "*"},
			obj{"Sid": "SecretsKeyThroughSecretsManager", "Effect": "Allow",
				"Action":    strs("kms:Decrypt", "kms:GenerateDataKey"),
				"Resource":  strs(d.keys.Secrets.Arn),
				"Condition": obj{"StringEquals": obj{"kms:ViaService": "secretsmanager." + cfg.Region + ".amazonaws.com"}}},
			obj{"Sid": "SetTheAuthToken", "Effect": "Allow",
				"Action":   strs("elasticache:DescribeReplicationGroups", "elasticache:ModifyReplicationGroup"),
				"Resource": strs(ds.Cache.Arn)},
			obj{"Sid": "RedeployTheTasks", "Effect": "Allow",
				"Action":   strs("ecs:UpdateService"),
				"Resource": serviceARNs},
			obj{"Sid": "WriteLogs", "Effect": "Allow",
				"Action":   strs("logs:CreateLogStream", "logs:PutLogEvents"),
				"Resource": strs(logs.Arn.ApplyT(func(a string) string { return a + ":log-stream:*" }).(pulumi.StringOutput))},
		)),
	}); err != nil {
		return err
	}
	fn, err := lambda.NewFunction(ctx, "rotator", &lambda.FunctionArgs{
		Name:          pulumi.String(fnName),
		Description:   pulumi.String("registrar: rotates the Redis AUTH token and redeploys tasks after secret rotations"),
		Role:          role.Arn,
		Runtime:       pulumi.String("provided.al2023"),
		Handler:       pulumi.String("bootstrap"),
		Architectures: pulumi.StringArray{pulumi.String("arm64")},
		// Built by infra/build-rotator.sh before `pulumi up`.
		Code:       pulumi.NewFileArchive(cfg.RotatorArchive),
		Timeout:    pulumi.Int(900),
		MemorySize: pulumi.Int(128),
		Environment: &lambda.FunctionEnvironmentArgs{Variables: pulumi.StringMap{
			"REPLICATION_GROUP_ID": ds.Cache.ReplicationGroupId,
			"REDIS_SECRET_ARN":     ds.RedisSecret.Arn,
			"DB_SECRET_ARN":        ds.DBSecretARN,
			"ECS_CLUSTER":          svc.Cluster.Name,
			"ECS_SERVICES":         pulumi.String(strings.Join(serviceNames, ",")),
		}},
		LoggingConfig: &lambda.FunctionLoggingConfigArgs{LogFormat: pulumi.String("JSON"), LogGroup: logs.Name},
		Tags:          d.tags("rotator"),
	})
	if err != nil {
		return err
	}
	invoke, err := lambda.NewPermission(ctx, "rotator-invoke-secretsmanager", &lambda.PermissionArgs{
		Action:    pulumi.String("lambda:InvokeFunction"),
		Function:  fn.Name,
		Principal: pulumi.String("secretsmanager.amazonaws.com"),
		SourceArn: ds.RedisSecret.Arn,
	})
	if err != nil {
		return err
	}
	if _, err := secretsmanager.NewSecretRotation(ctx, "secret-redis-auth-rotation", &secretsmanager.SecretRotationArgs{
		SecretId:          ds.RedisSecret.ID(),
		RotationLambdaArn: fn.Arn,
		RotationRules: &secretsmanager.SecretRotationRotationRulesArgs{
			AutomaticallyAfterDays: pulumi.Int(cfg.CacheTokenRotationDays),
		},
		RotateImmediately: pulumi.Bool(false),
	}, pulumi.DependsOn([]pulumi.Resource{invoke, svc.API})); err != nil {
		return err
	}

	// RDS rotates the master user secret itself; Secrets Manager reports it.
	rule, err := cloudwatch.NewEventRule(ctx, "db-secret-rotated", &cloudwatch.EventRuleArgs{
		Name:        pulumi.String(d.name("db-secret-rotated")),
		Description: pulumi.String("RDS rotated registrar's database secret: redeploy the tasks"),
		EventPattern: toJSON(obj{
			"source":      strs("aws.secretsmanager"),
			"detail-type": strs("AWS Service Event via CloudTrail"),
			"detail": obj{
				"eventSource": strs("secretsmanager.amazonaws.com"),
				"eventName":   strs("RotationSucceeded"),
			},
		}),
		Tags: d.tags("db-secret-rotated"),
	})
	if err != nil {
		return err
	}
	if _, err := lambda.NewPermission(ctx, "rotator-invoke-events", &lambda.PermissionArgs{
		Action:    pulumi.String("lambda:InvokeFunction"),
		Function:  fn.Name,
		Principal: pulumi.String("events.amazonaws.com"),
		SourceArn: rule.Arn,
	}); err != nil {
		return err
	}
	_, err = cloudwatch.NewEventTarget(ctx, "db-secret-rotated-target", &cloudwatch.EventTargetArgs{
		Rule: rule.Name,
		Arn:  fn.Arn,
	})
	return err
}
