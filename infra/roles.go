package main

import (
	"regexp"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// roles are the two identities of the task: the execution role is the ECS agent's
// (pull the image, write logs, read the injected secrets), the task role is registrar's
// own (exactly the AWS calls its code makes).
type roles struct {
	Execution, Task *iam.Role
	AppLogs         *cloudwatch.LogGroup
}

// The AWS calls registrar's code makes with the task role, by the package that makes
// them. The task role grants these and nothing else; a test checks both directions.
var (
	// stream/kinesis.go: the worker lists the inbound stream's shards and reads them from
	// checkpoints it keeps in the store (ListShards, GetShardIterator, GetRecords); the
	// outbox relay writes change events to the outbound stream (PutRecords).
	kinesisConsumerActions = []string{"kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"}
	kinesisProducerActions = []string{"kinesis:PutRecords"}
	// SSE-KMS on the streams: PutRecords needs a data key, GetRecords decrypts.
	streamKeyActions = []string{"kms:GenerateDataKey", "kms:Decrypt"}
	// vault/: Tink's aws-kms AEAD wraps and unwraps keys with the KEK (Encrypt, Decrypt).
	kekActions = []string{"kms:Encrypt", "kms:Decrypt"}
	// documents/: the EFS mount with IAM authorization, read-write, never root.
	efsClientActions = []string{"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
)

func (d *deployer) roles() (*roles, error) {
	r := &roles{}
	var err error
	if r.Execution, err = iam.NewRole(d.ctx, "execution-role", &iam.RoleArgs{
		Name:             pulumi.String(d.name("execution")),
		Description:      pulumi.String("ECS agent for registrar: pull the image, write logs, read the injected secrets"),
		AssumeRolePolicy: toJSON(d.trust("ecs-tasks.amazonaws.com")),
		Tags:             d.tags("execution"),
	}); err != nil {
		return nil, err
	}
	r.Task, err = iam.NewRole(d.ctx, "task-role", &iam.RoleArgs{
		Name:             pulumi.String(d.name("task")),
		Description:      pulumi.String("registrar itself: its streams, its keys, its documents"),
		AssumeRolePolicy: toJSON(d.trust("ecs-tasks.amazonaws.com")),
		Tags:             d.tags("task"),
	})
	return r, err
}

// ecrRepository returns the ARN of the ECR repository of a digest-pinned image, or ""
// for an image elsewhere (which then needs no ECR permissions).
var ecrImage = regexp.MustCompile(`^([0-9]{12})\.dkr\.ecr\.([a-z0-9\-]+)\.amazonaws\.com(\.cn)?/([^@]+)@sha256:[a-f0-9]{64}$`)

func (d *deployer) ecrRepository(image string) string {
	m := ecrImage.FindStringSubmatch(image)
	if m == nil {
		return ""
	}
	return strings.Join([]string{"arn", d.partition, "ecr", m[2], m[1], "repository/" + m[4]}, ":")
}

func (d *deployer) rolePolicies(r *roles, ds *dataServices) error {
	var err error
	if r.AppLogs, err = d.logGroup("app", pulumi.String("/registrar/"+d.cfg.Stack+"/ecs")); err != nil {
		return err
	}
	execStatements := []obj{
		{
			"Sid":      "WriteContainerLogs",
			"Effect":   "Allow",
			"Action":   strs("logs:CreateLogStream", "logs:PutLogEvents"),
			"Resource": strs(r.AppLogs.Arn.ApplyT(func(a string) string { return a + ":log-stream:*" }).(pulumi.StringOutput)),
		},
		{
			"Sid":      "ReadInjectedSecrets",
			"Effect":   "Allow",
			"Action":   strs("secretsmanager:GetSecretValue"),
			"Resource": strs(ds.DBSecretARN, ds.RedisSecret.Arn, ds.KeysetSecret.Arn),
		},
		{
			"Sid":       "DecryptInjectedSecrets",
			"Effect":    "Allow",
			"Action":    strs("kms:Decrypt"),
			"Resource":  strs(d.keys.Secrets.Arn),
			"Condition": obj{"StringEquals": obj{"kms:ViaService": "secretsmanager." + d.cfg.Region + ".amazonaws.com"}},
		},
	}
	if repo := d.ecrRepository(d.cfg.Image); repo != "" {
		execStatements = append(execStatements,
			obj{
				"Sid":    "ECRLogin",
				"Effect": "Allow",
				"Action": strs("ecr:GetAuthorizationToken"),
				// GetAuthorizationToken has no resource type: AWS requires "*".
				"Resource": "*",
			},
			obj{
				"Sid":      "PullTheImage",
				"Effect":   "Allow",
				"Action":   strs("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"),
				"Resource": strs(repo),
			})
	}
	if _, err := iam.NewRolePolicy(d.ctx, "execution-policy", &iam.RolePolicyArgs{
		Name:   pulumi.String("registrar-execution"),
		Role:   r.Execution.Name,
		Policy: toJSON(policy(execStatements...)),
	}); err != nil {
		return err
	}

	asList := func(ss []string) list {
		l := make(list, len(ss))
		for i, s := range ss {
			l[i] = s
		}
		return l
	}
	if _, err := iam.NewRolePolicy(d.ctx, "task-policy", &iam.RolePolicyArgs{
		Name: pulumi.String("registrar-task"),
		Role: r.Task.Name,
		Policy: toJSON(policy(
			obj{"Sid": "ConsumeInboundEvents", "Effect": "Allow", "Action": asList(kinesisConsumerActions), "Resource": strs(ds.StreamIn.Arn)},
			obj{"Sid": "ProduceChangeEvents", "Effect": "Allow", "Action": asList(kinesisProducerActions), "Resource": strs(ds.StreamOut.Arn)},
			obj{"Sid": "StreamEncryption", "Effect": "Allow", "Action": asList(streamKeyActions), "Resource": strs(d.keys.Stream.Arn)},
			obj{"Sid": "FieldEncryptionKEK", "Effect": "Allow", "Action": asList(kekActions), "Resource": strs(d.keys.KEK.Arn)},
			obj{
				"Sid":       "MountDocuments",
				"Effect":    "Allow",
				"Action":    asList(efsClientActions),
				"Resource":  strs(ds.Files.Arn),
				"Condition": obj{"StringEquals": obj{"elasticfilesystem:AccessPointArn": ds.AccessPoint.Arn}},
			},
		)),
	}); err != nil {
		return err
	}
	return d.filesPolicy(ds, r.Task)
}
