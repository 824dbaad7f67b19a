package main

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/efs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elasticache"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kinesis"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/rds"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// dataServices are the stores registrar uses at scale.
type dataServices struct {
	DB           *rds.Cluster
	DBInstances  []*rds.ClusterInstance
	DBSecretARN  pulumi.StringOutput // RDS-managed master user secret
	Cache        *elasticache.ReplicationGroup
	RedisSecret  *secretsmanager.Secret
	KeysetSecret *secretsmanager.Secret
	StreamIn     *kinesis.Stream
	StreamOut    *kinesis.Stream
	Files        *efs.FileSystem
	AccessPoint  *efs.AccessPoint
}

func (d *deployer) dataServices(n *network) (*dataServices, error) {
	ds := &dataServices{}
	var err error
	if err = d.database(n, ds); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if err = d.cache(n, ds); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if ds.KeysetSecret, err = secretsmanager.NewSecret(d.ctx, "secret-keyset", &secretsmanager.SecretArgs{
		Name: pulumi.String("registrar/" + d.cfg.Stack + "/keyset"),
		Description: pulumi.String("registrar's service keyset (signing and blind-index keys), encrypted by the KEK. " +
			"The value is put by an operator: registrar keys init --kek-uri aws-kms://<kek arn>"),
		KmsKeyId:             d.keys.Secrets.Arn,
		RecoveryWindowInDays: pulumi.Int(d.recoveryWindow()),
		Tags:                 d.tags("keyset"),
	}); err != nil {
		return nil, err
	}
	if err = d.streams(ds); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	if err = d.files(n, ds); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	return ds, nil
}

// recoveryWindow is how long a deleted secret can be restored.
func (d *deployer) recoveryWindow() int {
	if d.cfg.DeletionProtection {
		return 30
	}
	return 7
}

func (d *deployer) database(n *network, ds *dataServices) error {
	ctx, cfg := d.ctx, d.cfg
	major, err := pgMajor(cfg.DBEngineVersion)
	if err != nil {
		return err
	}
	clusterID := d.name("db")
	subnets, err := rds.NewSubnetGroup(ctx, "db-subnets", &rds.SubnetGroupArgs{
		Name:      pulumi.String(clusterID),
		SubnetIds: n.DataSubnetIDs,
		Tags:      d.tags("db-subnets"),
	})
	if err != nil {
		return err
	}
	params, err := rds.NewClusterParameterGroup(ctx, "db-params", &rds.ClusterParameterGroupArgs{
		Name:        pulumi.String(clusterID + "-pg" + major),
		Family:      pulumi.String("aurora-postgresql" + major),
		Description: pulumi.String("registrar: TLS required"),
		Parameters: rds.ClusterParameterGroupParameterArray{
			&rds.ClusterParameterGroupParameterArgs{Name: pulumi.String("rds.force_ssl"), Value: pulumi.String("1")},
			&rds.ClusterParameterGroupParameterArgs{Name: pulumi.String("ssl_min_protocol_version"), Value: pulumi.String("TLSv1.2")},
			&rds.ClusterParameterGroupParameterArgs{Name: pulumi.String("log_connections"), Value: pulumi.String("1")},
			&rds.ClusterParameterGroupParameterArgs{Name: pulumi.String("log_disconnections"), Value: pulumi.String("1")},
		},
		Tags: d.tags("db-params"),
	})
	if err != nil {
		return err
	}
	// RDS would create the export's log group itself, unencrypted and kept forever.
	logs, err := d.logGroup("db-postgresql", pulumi.String("/aws/rds/cluster/"+clusterID+"/postgresql"))
	if err != nil {
		return err
	}
	monitoring, err := iam.NewRole(ctx, "db-monitoring-role", &iam.RoleArgs{
		Name:             pulumi.String(d.name("db-monitoring")),
		AssumeRolePolicy: toJSON(d.trust("monitoring.rds.amazonaws.com")),
		// The AWS managed policy is the documented one for enhanced monitoring; it only
		// writes to the RDSOSMetrics log group.
		ManagedPolicyArns: pulumi.StringArray{pulumi.String("arn:" + d.partition + ":iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")},
		Tags:              d.tags("db-monitoring"),
	})
	if err != nil {
		return err
	}
	ds.DB, err = rds.NewCluster(ctx, "db", &rds.ClusterArgs{
		ClusterIdentifier:                pulumi.String(clusterID),
		Engine:                           pulumi.String("aurora-postgresql"),
		EngineMode:                       pulumi.String("provisioned"),
		EngineVersion:                    pulumi.String(cfg.DBEngineVersion),
		AllowMajorVersionUpgrade:         pulumi.Bool(false),
		DatabaseName:                     pulumi.String(cfg.DBName),
		MasterUsername:                   pulumi.String(cfg.DBUsername),
		ManageMasterUserPassword:         pulumi.Bool(true), // RDS keeps and rotates it in Secrets Manager
		MasterUserSecretKmsKeyId:         d.keys.Secrets.Arn,
		StorageEncrypted:                 pulumi.Bool(true),
		KmsKeyId:                         d.keys.Database.Arn,
		IamDatabaseAuthenticationEnabled: pulumi.Bool(true),
		DbSubnetGroupName:                subnets.Name,
		VpcSecurityGroupIds:              pulumi.StringArray{n.SG.Database.ID()},
		DbClusterParameterGroupName:      params.Name,
		Port:                             pulumi.Int(postgresPort),
		BackupRetentionPeriod:            pulumi.Int(cfg.BackupRetentionDays),
		PreferredBackupWindow:            pulumi.String("07:00-08:00"),
		PreferredMaintenanceWindow:       pulumi.String("sun:08:30-sun:09:30"),
		CopyTagsToSnapshot:               pulumi.Bool(true),
		DeletionProtection:               pulumi.Bool(cfg.DeletionProtection),
		SkipFinalSnapshot:                pulumi.Bool(!cfg.DeletionProtection),
		FinalSnapshotIdentifier:          pulumi.String(clusterID + "-final"),
		EnabledCloudwatchLogsExports:     pulumi.StringArray{pulumi.String("postgresql")},
		Serverlessv2ScalingConfiguration: &rds.ClusterServerlessv2ScalingConfigurationArgs{
			MinCapacity: pulumi.Float64(cfg.DBMinACU),
			MaxCapacity: pulumi.Float64(cfg.DBMaxACU),
		},
		Tags: d.tags("db"),
	}, pulumi.DependsOn([]pulumi.Resource{logs}))
	if err != nil {
		return err
	}
	for i := 0; i < cfg.DBInstances; i++ {
		inst, err := rds.NewClusterInstance(ctx, fmt.Sprintf("db-%d", i), &rds.ClusterInstanceArgs{
			Identifier:                  pulumi.String(fmt.Sprintf("%s-%d", clusterID, i)),
			ClusterIdentifier:           ds.DB.ID(),
			Engine:                      pulumi.String("aurora-postgresql"),
			EngineVersion:               ds.DB.EngineVersion,
			InstanceClass:               pulumi.String("db.serverless"),
			AvailabilityZone:            pulumi.String(d.azs[i%len(d.azs)]), // writer and readers in different AZs
			PubliclyAccessible:          pulumi.Bool(false),
			AutoMinorVersionUpgrade:     pulumi.Bool(true),
			CaCertIdentifier:            pulumi.String("rds-ca-rsa2048-g1"),
			MonitoringInterval:          pulumi.Int(60),
			MonitoringRoleArn:           monitoring.Arn,
			PerformanceInsightsEnabled:  pulumi.Bool(true),
			PerformanceInsightsKmsKeyId: d.keys.Database.Arn,
			PromotionTier:               pulumi.Int(i),
			CopyTagsToSnapshot:          pulumi.Bool(true),
			Tags:                        d.tags(fmt.Sprintf("db-%d", i)),
		})
		if err != nil {
			return err
		}
		ds.DBInstances = append(ds.DBInstances, inst)
	}
	ds.DBSecretARN = ds.DB.MasterUserSecrets.ApplyT(func(s []rds.ClusterMasterUserSecret) (string, error) {
		if len(s) == 0 || s[0].SecretArn == nil {
			return "", fmt.Errorf("cluster %s has no RDS-managed master user secret", clusterID)
		}
		return *s[0].SecretArn, nil
	}).(pulumi.StringOutput)
	return nil
}

// authTokenAlphabet is what ElastiCache accepts in an AUTH token.
const authTokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!&#$^<>-"

// newAuthToken generates a Redis AUTH token. It is stored only in Secrets Manager and in
// Pulumi's encrypted state; later runs ignore the new value they generate (the
// resources ignore changes to it), so a rotated token is not reverted.
func newAuthToken() (string, error) {
	b := make([]byte, 64)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(authTokenAlphabet))))
		if err != nil {
			return "", err
		}
		b[i] = authTokenAlphabet[n.Int64()]
	}
	return string(b), nil
}

func (d *deployer) cache(n *network, ds *dataServices) error {
	ctx, cfg := d.ctx, d.cfg
	token, err := newAuthToken()
	if err != nil {
		return err
	}
	secretToken := pulumi.ToSecret(pulumi.String(token)).(pulumi.StringOutput)
	ds.RedisSecret, err = secretsmanager.NewSecret(ctx, "secret-redis-auth", &secretsmanager.SecretArgs{
		Name:                 pulumi.String("registrar/" + cfg.Stack + "/redis-auth"),
		Description:          pulumi.String("AUTH token of registrar's ElastiCache replication group"),
		KmsKeyId:             d.keys.Secrets.Arn,
		RecoveryWindowInDays: pulumi.Int(d.recoveryWindow()),
		Tags:                 d.tags("redis-auth"),
	})
	if err != nil {
		return err
	}
	if _, err = secretsmanager.NewSecretVersion(ctx, "secret-redis-auth-value", &secretsmanager.SecretVersionArgs{
		SecretId:     ds.RedisSecret.ID(),
		SecretString: secretToken,
	}, pulumi.IgnoreChanges([]string{"secretString"})); err != nil {
		return err
	}
	subnets, err := elasticache.NewSubnetGroup(ctx, "cache-subnets", &elasticache.SubnetGroupArgs{
		Name:        pulumi.String(d.name("cache")),
		Description: pulumi.String("registrar Redis: isolated data subnets"),
		SubnetIds:   n.DataSubnetIDs,
		Tags:        d.tags("cache-subnets"),
	})
	if err != nil {
		return err
	}
	slowLog, err := d.logGroup("cache-slow-log", pulumi.String("/registrar/"+cfg.Stack+"/redis-slow-log"))
	if err != nil {
		return err
	}
	snapshots := 0
	if cfg.Backups {
		snapshots = 7
	}
	var azs pulumi.StringArray
	for i := 0; i < 2; i++ {
		azs = append(azs, pulumi.String(d.azs[i]))
	}
	args := &elasticache.ReplicationGroupArgs{
		ReplicationGroupId:       pulumi.String(d.name("cache")),
		Description:              pulumi.String("registrar cache (TLS + AUTH; never plaintext PII)"),
		Engine:                   pulumi.String("redis"),
		EngineVersion:            pulumi.String(cfg.CacheEngineVersion),
		NodeType:                 pulumi.String(cfg.CacheNodeType),
		NumCacheClusters:         pulumi.Int(2),
		PreferredCacheClusterAzs: azs,
		AutomaticFailoverEnabled: pulumi.Bool(true),
		MultiAzEnabled:           pulumi.Bool(true),
		AtRestEncryptionEnabled:  pulumi.Bool(true),
		KmsKeyId:                 d.keys.Cache.Arn,
		TransitEncryptionEnabled: pulumi.Bool(true),
		TransitEncryptionMode:    pulumi.String("required"),
		AuthToken:                secretToken,
		AuthTokenUpdateStrategy:  pulumi.String("ROTATE"),
		AutoMinorVersionUpgrade:  pulumi.Bool(true),
		Port:                     pulumi.Int(redisPort),
		SubnetGroupName:          subnets.Name,
		SecurityGroupIds:         pulumi.StringArray{n.SG.Cache.ID()},
		SnapshotRetentionLimit:   pulumi.Int(snapshots),
		MaintenanceWindow:        pulumi.String("sun:09:30-sun:10:30"),
		ApplyImmediately:         pulumi.Bool(true),
		LogDeliveryConfigurations: elasticache.ReplicationGroupLogDeliveryConfigurationArray{
			&elasticache.ReplicationGroupLogDeliveryConfigurationArgs{
				Destination:     slowLog.Name,
				DestinationType: pulumi.String("cloudwatch-logs"),
				LogFormat:       pulumi.String("json"),
				LogType:         pulumi.String("slow-log"),
			},
		},
		Tags: d.tags("cache"),
	}
	if cfg.Backups {
		args.SnapshotWindow = pulumi.String("06:00-07:00")
	}
	if cfg.DeletionProtection {
		args.FinalSnapshotIdentifier = pulumi.String(d.name("cache-final"))
	}
	ds.Cache, err = elasticache.NewReplicationGroup(ctx, "cache", args, pulumi.IgnoreChanges([]string{"authToken"}))
	return err
}

func (d *deployer) streams(ds *dataServices) error {
	mk := func(dir string) (*kinesis.Stream, error) {
		args := &kinesis.StreamArgs{
			Name:              pulumi.String(d.name(dir)),
			RetentionPeriod:   pulumi.Int(168), // Kinesis.3: 7 days to recover a stalled consumer
			EncryptionType:    pulumi.String("KMS"),
			KmsKeyId:          d.keys.Stream.Arn,
			StreamModeDetails: &kinesis.StreamStreamModeDetailsArgs{StreamMode: pulumi.String(d.cfg.StreamMode)},
			Tags:              d.tags(dir),
		}
		if d.cfg.StreamMode == "PROVISIONED" {
			args.ShardCount = pulumi.Int(d.cfg.StreamShards)
		}
		return kinesis.NewStream(d.ctx, "stream-"+dir, args)
	}
	var err error
	if ds.StreamIn, err = mk("in"); err != nil {
		return err
	}
	ds.StreamOut, err = mk("out")
	return err
}

func (d *deployer) files(n *network, ds *dataServices) error {
	ctx := d.ctx
	var err error
	ds.Files, err = efs.NewFileSystem(ctx, "files", &efs.FileSystemArgs{
		CreationToken:  pulumi.String(d.name("documents")),
		Encrypted:      pulumi.Bool(true),
		KmsKeyId:       d.keys.Files.Arn,
		ThroughputMode: pulumi.String("elastic"),
		LifecyclePolicies: efs.FileSystemLifecyclePolicyArray{
			&efs.FileSystemLifecyclePolicyArgs{TransitionToIa: pulumi.String("AFTER_30_DAYS")},
			&efs.FileSystemLifecyclePolicyArgs{TransitionToPrimaryStorageClass: pulumi.String("AFTER_1_ACCESS")},
		},
		Tags: d.tags("documents"),
	})
	if err != nil {
		return err
	}
	status := "DISABLED"
	if d.cfg.Backups {
		status = "ENABLED"
	}
	if _, err := efs.NewBackupPolicy(ctx, "files-backup", &efs.BackupPolicyArgs{
		FileSystemId: ds.Files.ID(),
		BackupPolicy: &efs.BackupPolicyBackupPolicyArgs{Status: pulumi.String(status)},
	}); err != nil {
		return err
	}
	for i, s := range n.AppSubnets {
		if _, err := efs.NewMountTarget(ctx, "files-mount-"+strconv.Itoa(i), &efs.MountTargetArgs{
			FileSystemId:   ds.Files.ID(),
			SubnetId:       s.ID(),
			SecurityGroups: pulumi.StringArray{n.SG.Files.ID()},
		}); err != nil {
			return err
		}
	}
	ds.AccessPoint, err = efs.NewAccessPoint(ctx, "files-ap", &efs.AccessPointArgs{
		FileSystemId: ds.Files.ID(),
		PosixUser: &efs.AccessPointPosixUserArgs{
			Uid: pulumi.Int(containerUID),
			Gid: pulumi.Int(containerUID),
		},
		RootDirectory: &efs.AccessPointRootDirectoryArgs{
			Path: pulumi.String(accessPointRoot),
			CreationInfo: &efs.AccessPointRootDirectoryCreationInfoArgs{
				OwnerUid:    pulumi.Int(containerUID),
				OwnerGid:    pulumi.Int(containerUID),
				Permissions: pulumi.String("0700"),
			},
		},
		Tags: d.tags("documents-ap"),
	})
	return err
}

// filesPolicy denies every NFS connection without TLS, and every one that does not go
// through the access point; the task role is the only principal allowed to mount and
// write, and nobody gets root access.
func (d *deployer) filesPolicy(ds *dataServices, task *iam.Role) error {
	_, err := efs.NewFileSystemPolicy(d.ctx, "files-policy", &efs.FileSystemPolicyArgs{
		FileSystemId: ds.Files.ID(),
		Policy: toJSON(policy(
			obj{
				"Sid":       "DenyWithoutTLS",
				"Effect":    "Deny",
				"Principal": obj{"AWS": "*"},
				"Action":    strs("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"),
				"Resource":  ds.Files.Arn,
				"Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}},
			},
			obj{
				"Sid":       "DenyOutsideTheAccessPoint",
				"Effect":    "Deny",
				"Principal": obj{"AWS": "*"},
				"Action":    strs("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"),
				"Resource":  ds.Files.Arn,
				"Condition": obj{"StringNotEquals": obj{"elasticfilesystem:AccessPointArn": ds.AccessPoint.Arn}},
			},
			obj{
				"Sid":       "TaskMountsTheDocumentsAccessPoint",
				"Effect":    "Allow",
				"Principal": obj{"AWS": task.Arn},
				"Action":    strs("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"),
				"Resource":  ds.Files.Arn,
				"Condition": obj{"StringEquals": obj{"elasticfilesystem:AccessPointArn": ds.AccessPoint.Arn}},
			},
		)),
	})
	return err
}
