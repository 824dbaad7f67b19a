package main

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// alarms notify an encrypted topic of what an on-call person must act on: errors seen
// by clients, slow responses, a stalled worker, a busy database, and storage running
// out.
func (d *deployer) alarms(e *edge, ds *dataServices, lbs *loadBalancers) (*sns.Topic, error) {
	ctx, cfg := d.ctx, d.cfg
	topic, err := sns.NewTopic(ctx, "alarms", &sns.TopicArgs{
		Name:           pulumi.String(d.name("alarms")),
		KmsMasterKeyId: d.keys.Logs.Arn,
		Tags:           d.tags("alarms"),
	})
	if err != nil {
		return nil, err
	}
	if cfg.AlarmEmail != "" {
		if _, err := sns.NewTopicSubscription(ctx, "alarms-email", &sns.TopicSubscriptionArgs{
			Topic:    topic.Arn,
			Protocol: pulumi.String("email"),
			Endpoint: pulumi.String(cfg.AlarmEmail),
		}); err != nil {
			return nil, err
		}
	}
	actions := pulumi.Array{topic.Arn}
	type alarm struct {
		name, desc, namespace, metric, stat, extended, op string
		threshold                                         float64
		periods                                           int
		dims                                              pulumi.StringMap
	}
	apiDims := pulumi.StringMap{"ApiName": e.API.Name, "Stage": pulumi.String(stageName)}
	list := []alarm{
		{name: "api-5xx-rate", desc: "more than 1% of API requests answered 5xx for 10 minutes",
			namespace: "AWS/ApiGateway", metric: "5XXError", stat: "Average", op: "GreaterThanThreshold",
			threshold: 0.01, periods: 2, dims: apiDims},
		{name: "api-p99-latency", desc: "p99 API latency above 2 s for 15 minutes",
			namespace: "AWS/ApiGateway", metric: "Latency", extended: "p99", op: "GreaterThanThreshold",
			threshold: 2000, periods: 3, dims: apiDims},
		{name: "target-5xx", desc: "tasks answered 5xx through the ALB",
			namespace: "AWS/ApplicationELB", metric: "HTTPCode_Target_5XX_Count", stat: "Sum", op: "GreaterThanThreshold",
			threshold: 10, periods: 2, dims: pulumi.StringMap{"LoadBalancer": lbs.ALB.ArnSuffix, "TargetGroup": lbs.TargetGroup.ArnSuffix}},
		{name: "worker-lag", desc: "inbound SIS events wait more than 5 minutes for the worker",
			namespace: "AWS/Kinesis", metric: "GetRecords.IteratorAgeMilliseconds", stat: "Maximum", op: "GreaterThanThreshold",
			threshold: 300000, periods: 3, dims: pulumi.StringMap{"StreamName": ds.StreamIn.Name}},
		{name: "db-cpu", desc: "database CPU above 80% for 15 minutes",
			namespace: "AWS/RDS", metric: "CPUUtilization", stat: "Average", op: "GreaterThanThreshold",
			threshold: 80, periods: 3, dims: pulumi.StringMap{"DBClusterIdentifier": ds.DB.ClusterIdentifier}},
		{name: "db-acu", desc: "database at more than 90% of its maximum capacity for 15 minutes",
			namespace: "AWS/RDS", metric: "ACUUtilization", stat: "Average", op: "GreaterThanThreshold",
			threshold: 90, periods: 3, dims: pulumi.StringMap{"DBClusterIdentifier": ds.DB.ClusterIdentifier}},
		{name: "cache-memory", desc: "Redis memory above 80%",
			namespace: "AWS/ElastiCache", metric: "DatabaseMemoryUsagePercentage", stat: "Maximum", op: "GreaterThanThreshold",
			threshold: 80, periods: 3, dims: pulumi.StringMap{"ReplicationGroupId": ds.Cache.ReplicationGroupId}},
	}
	for i, inst := range ds.DBInstances {
		list = append(list, alarm{name: fmt.Sprintf("db-%d-free-storage", i), desc: "database instance local storage below 2 GiB",
			namespace: "AWS/RDS", metric: "FreeLocalStorage", stat: "Minimum", op: "LessThanThreshold",
			threshold: 2 * 1024 * 1024 * 1024, periods: 2, dims: pulumi.StringMap{"DBInstanceIdentifier": inst.Identifier}})
	}
	for _, a := range list {
		args := &cloudwatch.MetricAlarmArgs{
			Name:               pulumi.String(d.name(a.name)),
			AlarmDescription:   pulumi.String(a.desc),
			Namespace:          pulumi.String(a.namespace),
			MetricName:         pulumi.String(a.metric),
			Dimensions:         a.dims,
			Period:             pulumi.Int(300),
			EvaluationPeriods:  pulumi.Int(a.periods),
			ComparisonOperator: pulumi.String(a.op),
			Threshold:          pulumi.Float64(a.threshold),
			TreatMissingData:   pulumi.String("notBreaching"),
			AlarmActions:       actions,
			OkActions:          actions,
			Tags:               d.tags(a.name),
		}
		if a.extended != "" {
			args.ExtendedStatistic = pulumi.String(a.extended)
		} else {
			args.Statistic = pulumi.String(a.stat)
		}
		if _, err := cloudwatch.NewMetricAlarm(ctx, "alarm-"+a.name, args); err != nil {
			return nil, err
		}
	}
	return topic, nil
}
