package main

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// keys has one customer managed key per purpose. None of their policies allows kms:*,
// and each use is granted to a named principal or, for AWS services that encrypt on the
// caller's behalf, to the account through that one service (kms:ViaService), so an IAM
// policy can only use a key through the service it belongs to.
type keys struct {
	Database, Cache, Stream, Files, Secrets, Logs, KEK *kms.Key
	Aliases                                            map[string]pulumi.StringOutput // purpose -> alias name
}

// keyAdminActions administer a key without using it; the account (and so its IAM
// administrators) keeps them so that a key can never become unmanageable.
var keyAdminActions = strs(
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey",
	"kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
	"kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListGrants", "kms:ListKeyPolicies",
	"kms:ListKeyRotations", "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:RevokeGrant",
	"kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource",
	"kms:UpdateAlias", "kms:UpdateKeyDescription",
)

// serviceUseActions are what an AWS service needs to encrypt a resource with a key for
// its caller.
var serviceUseActions = strs(
	"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant", "kms:ListGrants", "kms:DescribeKey",
)

func (d *deployer) createKeys(r *roles) (*keys, error) {
	root := obj{"AWS": d.arn("iam", "", "root")}
	admin := obj{
		"Sid":       "KeyAdministration",
		"Effect":    "Allow",
		"Principal": root,
		"Action":    keyAdminActions,
		"Resource":  "*", // in a key policy "*" is this key
	}
	via := func(service string) obj {
		return obj{
			"Sid":       "UseThrough" + service,
			"Effect":    "Allow",
			"Principal": root,
			"Action":    serviceUseActions,
			"Resource":  "*",
			"Condition": obj{"StringEquals": obj{
				"kms:ViaService":    service + "." + d.cfg.Region + ".amazonaws.com",
				"kms:CallerAccount": d.account,
			}},
		}
	}
	operators := list{}
	for _, a := range d.cfg.KeyOperatorARNs {
		operators = append(operators, a)
	}

	k := &keys{Aliases: map[string]pulumi.StringOutput{}}
	specs := []struct {
		dst        **kms.Key
		purpose    string
		desc       string
		statements []obj
	}{
		{&k.Database, "database", "Aurora storage, Performance Insights", []obj{admin, via("rds")}},
		{&k.Cache, "cache", "ElastiCache at rest", []obj{admin, via("elasticache")}},
		{&k.Stream, "stream", "Kinesis server-side encryption", []obj{admin, via("kinesis"), {
			"Sid":       "TaskProducesAndConsumes",
			"Effect":    "Allow",
			"Principal": obj{"AWS": r.Task.Arn},
			"Action":    strs("kms:GenerateDataKey", "kms:Decrypt"),
			"Resource":  "*",
			"Condition": obj{"StringEquals": obj{"kms:ViaService": "kinesis." + d.cfg.Region + ".amazonaws.com"}},
		}}},
		{&k.Files, "files", "EFS documents", []obj{admin, via("elasticfilesystem")}},
		{&k.Secrets, "secrets", "Secrets Manager secrets", []obj{admin, via("secretsmanager"), {
			"Sid":       "ExecutionRoleReadsInjectedSecrets",
			"Effect":    "Allow",
			"Principal": obj{"AWS": r.Execution.Arn},
			"Action":    strs("kms:Decrypt"),
			"Resource":  "*",
			"Condition": obj{"StringEquals": obj{"kms:ViaService": "secretsmanager." + d.cfg.Region + ".amazonaws.com"}},
		}}},
		{&k.Logs, "logs", "CloudWatch Logs and the alarm topic", []obj{admin, {
			"Sid":       "CloudWatchLogs",
			"Effect":    "Allow",
			"Principal": obj{"Service": "logs." + d.cfg.Region + ".amazonaws.com"},
			"Action":    strs("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"),
			"Resource":  "*",
			"Condition": obj{"ArnLike": obj{"kms:EncryptionContext:aws:logs:arn": d.arn("logs", d.cfg.Region, "log-group:*")}},
		}, {
			"Sid":       "CloudWatchAlarmsPublish",
			"Effect":    "Allow",
			"Principal": obj{"Service": "cloudwatch.amazonaws.com"},
			"Action":    strs("kms:GenerateDataKey", "kms:Decrypt"),
			"Resource":  "*",
			"Condition": obj{"StringEquals": obj{"aws:SourceAccount": d.account}},
		}, via("sns")}},
		{&k.KEK, "kek", "registrar field-encryption key-encryption key (Tink aws-kms)", append([]obj{admin, {
			"Sid":       "TaskWrapsAndUnwrapsDataKeys",
			"Effect":    "Allow",
			"Principal": obj{"AWS": r.Task.Arn},
			"Action":    strs("kms:Encrypt", "kms:Decrypt"),
			"Resource":  "*",
		}}, operatorStatement(operators)...)},
	}
	for _, s := range specs {
		key, err := kms.NewKey(d.ctx, "key-"+s.purpose, &kms.KeyArgs{
			Description:          pulumi.String("registrar " + d.cfg.Stack + ": " + s.desc),
			KeyUsage:             pulumi.String("ENCRYPT_DECRYPT"),
			EnableKeyRotation:    pulumi.Bool(true), // KMS.4
			RotationPeriodInDays: pulumi.Int(365),
			DeletionWindowInDays: pulumi.Int(30), // KMS.3: a month to notice and cancel
			Policy:               toJSON(policy(s.statements...)),
			Tags:                 d.tagsWith("key-"+s.purpose, map[string]string{"purpose": s.purpose}),
		})
		if err != nil {
			return nil, err
		}
		alias, err := kms.NewAlias(d.ctx, "alias-"+s.purpose, &kms.AliasArgs{
			Name:        pulumi.String("alias/registrar/" + d.cfg.Stack + "/" + s.purpose),
			TargetKeyId: key.KeyId,
		})
		if err != nil {
			return nil, err
		}
		*s.dst = key
		k.Aliases[s.purpose] = alias.Name
	}
	return k, nil
}

// operatorStatement lets the named operators create and rotate the service keyset
// (`registrar keys init|rotate --kek-uri ...`), which wraps it with the KEK.
func operatorStatement(operators list) []obj {
	if len(operators) == 0 {
		return nil
	}
	return []obj{{
		"Sid":       "OperatorsWrapTheKeyset",
		"Effect":    "Allow",
		"Principal": obj{"AWS": operators},
		"Action":    strs("kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"),
		"Resource":  "*",
	}}
}
