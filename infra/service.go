package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/appautoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ecsService is the ECS part: one cluster, the API service (`registrar serve`) behind
// the ALB and, if configured, a worker service (`registrar worker`).
type ecsService struct {
	Cluster        *ecs.Cluster
	TaskDefinition *ecs.TaskDefinition
	API            *ecs.Service
	Worker         *ecs.Service // nil unless SeparateWorker
}

// containerDefinition is the subset of ECS's container definition that registrar uses.
// Field names are ECS's JSON names.
type containerDefinition struct {
	Name                   string           `json:"name"`
	Image                  string           `json:"image"`
	Essential              bool             `json:"essential"`
	Command                []string         `json:"command"`
	User                   string           `json:"user"`
	ReadonlyRootFilesystem bool             `json:"readonlyRootFilesystem"`
	Privileged             bool             `json:"privileged"`
	PortMappings           []portMapping    `json:"portMappings,omitempty"`
	Environment            []nameValue      `json:"environment"`
	Secrets                []nameValueFrom  `json:"secrets"`
	MountPoints            []mountPoint     `json:"mountPoints"`
	LogConfiguration       logConfiguration `json:"logConfiguration"`
	LinuxParameters        linuxParameters  `json:"linuxParameters"`
	StopTimeout            int              `json:"stopTimeout"`
}

type portMapping struct {
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}
type nameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}
type nameValueFrom struct {
	Name      string `json:"name"`
	ValueFrom string `json:"valueFrom"`
}
type mountPoint struct {
	SourceVolume  string `json:"sourceVolume"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly"`
}
type logConfiguration struct {
	LogDriver string            `json:"logDriver"`
	Options   map[string]string `json:"options"`
}
type linuxParameters struct {
	InitProcessEnabled bool                `json:"initProcessEnabled"`
	Capabilities       map[string][]string `json:"capabilities"`
}

// containerDefinitions renders the one container of a task definition.
func (d *deployer) containerDefinitions(command string, withPort bool, res taskResources, logGroup string) (string, error) {
	env, secrets, err := taskSettings(d.cfg, res)
	if err != nil {
		return "", err
	}
	c := containerDefinition{
		Name:                   containerName,
		Image:                  d.cfg.Image,
		Essential:              true,
		Command:                []string{command},
		User:                   fmt.Sprintf("%d:%d", containerUID, containerUID),
		ReadonlyRootFilesystem: true,
		Privileged:             false,
		MountPoints: []mountPoint{
			{SourceVolume: "data", ContainerPath: dataDir},
			{SourceVolume: "tmp", ContainerPath: tmpDir},
			{SourceVolume: "documents", ContainerPath: documentsDir},
		},
		LogConfiguration: logConfiguration{
			LogDriver: "awslogs",
			Options: map[string]string{
				"awslogs-group":         logGroup,
				"awslogs-region":        d.cfg.Region,
				"awslogs-stream-prefix": command,
			},
		},
		LinuxParameters: linuxParameters{
			InitProcessEnabled: true,
			Capabilities:       map[string][]string{"drop": {"ALL"}},
		},
		StopTimeout: 30,
	}
	if withPort {
		c.PortMappings = []portMapping{{ContainerPort: listenPort, Protocol: "tcp"}}
	}
	for _, k := range sortedStringKeys(env) {
		c.Environment = append(c.Environment, nameValue{Name: k, Value: env[k]})
	}
	for _, k := range sortedStringKeys(secrets) {
		c.Secrets = append(c.Secrets, nameValueFrom{Name: k, ValueFrom: secrets[k]})
	}
	b, err := json.Marshal([]containerDefinition{c})
	return string(b), err
}

func sortedStringKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (d *deployer) service(n *network, r *roles, ds *dataServices, lbs *loadBalancers) (*ecsService, error) {
	ctx, cfg := d.ctx, d.cfg
	s := &ecsService{}
	var err error
	s.Cluster, err = ecs.NewCluster(ctx, "cluster", &ecs.ClusterArgs{
		Name: pulumi.String(d.name("cluster")),
		Settings: ecs.ClusterSettingArray{&ecs.ClusterSettingArgs{
			Name:  pulumi.String("containerInsights"),
			Value: pulumi.String("enabled"), // ECS.12
		}},
		Tags: d.tags("cluster"),
	})
	if err != nil {
		return nil, err
	}

	resources := pulumi.All(ds.DB.Endpoint, ds.DB.ReaderEndpoint, ds.Cache.PrimaryEndpointAddress,
		ds.StreamIn.Name, ds.StreamOut.Name, d.keys.KEK.Arn, ds.DBSecretARN, ds.RedisSecret.Arn,
		ds.KeysetSecret.Arn, r.AppLogs.Name)
	taskDef := func(name, command string, withPort bool) (*ecs.TaskDefinition, error) {
		defs := resources.ApplyT(func(v []any) (string, error) {
			str := func(i int) string { s, _ := v[i].(string); return s }
			return d.containerDefinitions(command, withPort, taskResources{
				DBWriterHost:    str(0),
				DBReaderHost:    str(1),
				RedisHost:       str(2),
				StreamIn:        str(3),
				StreamOut:       str(4),
				KEKARN:          str(5),
				DBSecretARN:     str(6),
				RedisSecretARN:  str(7),
				KeysetSecretARN: str(8),
			}, str(9))
		}).(pulumi.StringOutput)
		return ecs.NewTaskDefinition(ctx, name, &ecs.TaskDefinitionArgs{
			Family:                  pulumi.String(d.name(command)),
			RequiresCompatibilities: pulumi.StringArray{pulumi.String("FARGATE")},
			NetworkMode:             pulumi.String("awsvpc"),
			Cpu:                     pulumi.String(strconv.Itoa(cfg.TaskCPU)),
			Memory:                  pulumi.String(strconv.Itoa(cfg.TaskMemory)),
			RuntimePlatform: &ecs.TaskDefinitionRuntimePlatformArgs{
				OperatingSystemFamily: pulumi.String("LINUX"),
				CpuArchitecture:       pulumi.String(cfg.Architecture),
			},
			ExecutionRoleArn:     r.Execution.Arn,
			TaskRoleArn:          r.Task.Arn,
			ContainerDefinitions: defs,
			Volumes: ecs.TaskDefinitionVolumeArray{
				// Fargate has no tmpfs: these are task-local ephemeral volumes (encrypted by
				// Fargate with an AWS owned key) that the image pre-creates as the
				// container user's, so the root filesystem can stay read-only.
				&ecs.TaskDefinitionVolumeArgs{Name: pulumi.String("data")},
				&ecs.TaskDefinitionVolumeArgs{Name: pulumi.String("tmp")},
				&ecs.TaskDefinitionVolumeArgs{
					Name: pulumi.String("documents"),
					EfsVolumeConfiguration: &ecs.TaskDefinitionVolumeEfsVolumeConfigurationArgs{
						FileSystemId:      ds.Files.ID(),
						TransitEncryption: pulumi.String("ENABLED"),
						AuthorizationConfig: &ecs.TaskDefinitionVolumeEfsVolumeConfigurationAuthorizationConfigArgs{
							AccessPointId: ds.AccessPoint.ID(),
							Iam:           pulumi.String("ENABLED"),
						},
					},
				},
			},
			Tags: d.tags(command),
		})
	}
	if s.TaskDefinition, err = taskDef("task-serve", "serve", true); err != nil {
		return nil, err
	}

	network := &ecs.ServiceNetworkConfigurationArgs{
		Subnets:        n.AppSubnetIDs,
		SecurityGroups: pulumi.StringArray{n.SG.Tasks.ID()},
		AssignPublicIp: pulumi.Bool(false), // ECS.2
	}
	svc := func(name, command string, td *ecs.TaskDefinition, count int, lbArgs ecs.ServiceLoadBalancerArray, deps []pulumi.Resource) (*ecs.Service, error) {
		args := &ecs.ServiceArgs{
			Name:                            pulumi.String(d.name(command)),
			Cluster:                         s.Cluster.Arn,
			TaskDefinition:                  td.Arn,
			DesiredCount:                    pulumi.Int(count),
			LaunchType:                      pulumi.String("FARGATE"),
			PlatformVersion:                 pulumi.String("LATEST"), // ECS.10
			NetworkConfiguration:            network,
			DeploymentMinimumHealthyPercent: pulumi.Int(100),
			DeploymentMaximumPercent:        pulumi.Int(200),
			DeploymentCircuitBreaker: &ecs.ServiceDeploymentCircuitBreakerArgs{
				Enable:   pulumi.Bool(true),
				Rollback: pulumi.Bool(true),
			},
			AvailabilityZoneRebalancing: pulumi.String("ENABLED"),
			EnableExecuteCommand:        pulumi.Bool(false), // no shell into a container that holds student records
			EnableEcsManagedTags:        pulumi.Bool(true),
			PropagateTags:               pulumi.String("SERVICE"),
			LoadBalancers:               lbArgs,
			Tags:                        d.tags(command),
		}
		if len(lbArgs) > 0 {
			args.HealthCheckGracePeriodSeconds = pulumi.Int(60)
		}
		// Autoscaling owns the running count after creation.
		return ecs.NewService(ctx, name, args, pulumi.DependsOn(deps), pulumi.IgnoreChanges([]string{"desiredCount"}))
	}
	s.API, err = svc("service-serve", "serve", s.TaskDefinition, cfg.DesiredCount, ecs.ServiceLoadBalancerArray{&ecs.ServiceLoadBalancerArgs{
		TargetGroupArn: lbs.TargetGroup.Arn,
		ContainerName:  pulumi.String(containerName),
		ContainerPort:  pulumi.Int(listenPort),
	}}, []pulumi.Resource{lbs.Listener})
	if err != nil {
		return nil, err
	}
	if err := d.autoscaling(s, lbs); err != nil {
		return nil, err
	}
	if cfg.SeparateWorker {
		td, err := taskDef("task-worker", "worker", false)
		if err != nil {
			return nil, err
		}
		if s.Worker, err = svc("service-worker", "worker", td, cfg.WorkerCount, nil, nil); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// autoscaling keeps the API between DesiredCount and MaxCount on CPU and on requests
// per task.
func (d *deployer) autoscaling(s *ecsService, lbs *loadBalancers) error {
	resourceID := pulumi.Sprintf("service/%s/%s", s.Cluster.Name, s.API.Name)
	target, err := appautoscaling.NewTarget(d.ctx, "scaling-target", &appautoscaling.TargetArgs{
		ServiceNamespace:  pulumi.String("ecs"),
		ScalableDimension: pulumi.String("ecs:service:DesiredCount"),
		ResourceId:        resourceID,
		MinCapacity:       pulumi.Int(d.cfg.DesiredCount),
		MaxCapacity:       pulumi.Int(d.cfg.MaxCount),
	})
	if err != nil {
		return err
	}
	policy := func(name, metric string, label pulumi.StringPtrInput, value float64) error {
		_, err := appautoscaling.NewPolicy(d.ctx, "scaling-"+name, &appautoscaling.PolicyArgs{
			Name:              pulumi.String(d.name(name)),
			PolicyType:        pulumi.String("TargetTrackingScaling"),
			ServiceNamespace:  target.ServiceNamespace,
			ScalableDimension: target.ScalableDimension,
			ResourceId:        target.ResourceId,
			TargetTrackingScalingPolicyConfiguration: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs{
				PredefinedMetricSpecification: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs{
					PredefinedMetricType: pulumi.String(metric),
					ResourceLabel:        label,
				},
				TargetValue:      pulumi.Float64(value),
				ScaleInCooldown:  pulumi.Int(300),
				ScaleOutCooldown: pulumi.Int(60),
			},
		})
		return err
	}
	if err := policy("cpu", "ECSServiceAverageCPUUtilization", nil, 60); err != nil {
		return err
	}
	label := pulumi.Sprintf("%s/%s", lbs.ALB.ArnSuffix, lbs.TargetGroup.ArnSuffix)
	return policy("requests", "ALBRequestCountPerTarget", label, 1000)
}
