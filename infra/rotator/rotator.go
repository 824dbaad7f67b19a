// Command rotator is the Lambda function that keeps registrar's secrets rotated without
// an outage:
//
//   - It is the Secrets Manager rotation function of the Redis AUTH token: it adds a new
//     token to the replication group with the ROTATE strategy (old and new both valid),
//     makes it AWSCURRENT, and starts a new deployment of registrar's ECS services so
//     that every task reads the new token before the next rotation retires the old one.
//   - It receives Secrets Manager's RotationSucceeded events (EventBridge) and, for the
//     RDS-managed database secret, which RDS rotates itself, starts a new deployment so
//     that tasks pick up the new password.
//
// It runs outside the VPC and never connects to Redis; it calls only Secrets Manager,
// ElastiCache and ECS, with a role limited to the one secret, the one replication group
// and the services (see infra/rotation.go). Build it with infra/build-rotator.sh.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/elasticache"
	ectypes "github.com/aws/aws-sdk-go-v2/service/elasticache/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// The calls the rotator makes, as small interfaces so that tests use fakes.
type secretsAPI interface {
	DescribeSecret(context.Context, *secretsmanager.DescribeSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	GetRandomPassword(context.Context, *secretsmanager.GetRandomPasswordInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetRandomPasswordOutput, error)
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	UpdateSecretVersionStage(context.Context, *secretsmanager.UpdateSecretVersionStageInput, ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error)
}

type cacheAPI interface {
	DescribeReplicationGroups(context.Context, *elasticache.DescribeReplicationGroupsInput, ...func(*elasticache.Options)) (*elasticache.DescribeReplicationGroupsOutput, error)
	ModifyReplicationGroup(context.Context, *elasticache.ModifyReplicationGroupInput, ...func(*elasticache.Options)) (*elasticache.ModifyReplicationGroupOutput, error)
}

type ecsAPI interface {
	UpdateService(context.Context, *ecs.UpdateServiceInput, ...func(*ecs.Options)) (*ecs.UpdateServiceOutput, error)
}

// rotator holds the clients and what the stack told it (environment variables).
type rotator struct {
	sm  secretsAPI
	ec  cacheAPI
	ecs ecsAPI
	log *slog.Logger

	group       string   // REPLICATION_GROUP_ID
	redisSecret string   // REDIS_SECRET_ARN: the only secret it rotates
	dbSecret    string   // DB_SECRET_ARN: the RDS-managed secret it redeploys for
	cluster     string   // ECS_CLUSTER
	services    []string // ECS_SERVICES, comma-separated

	pollEvery time.Duration // while the replication group is modifying
	maxWait   time.Duration
}

// rotationEvent is what Secrets Manager sends a rotation function.
type rotationEvent struct {
	SecretID           string `json:"SecretId"`
	ClientRequestToken string `json:"ClientRequestToken"`
	Step               string `json:"Step"`
}

// rotationSucceeded is the part of the EventBridge event that matters here.
type rotationSucceeded struct {
	DetailType string `json:"detail-type"`
	Detail     struct {
		EventName           string `json:"eventName"`
		AdditionalEventData struct {
			SecretID string `json:"SecretId"`
		} `json:"additionalEventData"`
	} `json:"detail"`
}

// handle dispatches on the shape of the event.
func (r *rotator) handle(ctx context.Context, raw json.RawMessage) error {
	var ev rotationEvent
	if err := json.Unmarshal(raw, &ev); err == nil && ev.Step != "" {
		return r.rotate(ctx, ev)
	}
	var s rotationSucceeded
	if err := json.Unmarshal(raw, &s); err != nil || s.Detail.EventName != "RotationSucceeded" {
		return fmt.Errorf("rotator: not a rotation step nor a RotationSucceeded event")
	}
	if s.Detail.AdditionalEventData.SecretID != r.dbSecret {
		r.log.Info("ignoring rotation of another secret", "secret", s.Detail.AdditionalEventData.SecretID)
		return nil
	}
	r.log.Info("database secret rotated by RDS: redeploying", "services", r.services)
	return r.redeploy(ctx)
}

// rotate runs one step of Secrets Manager's four-step rotation for the Redis token.
func (r *rotator) rotate(ctx context.Context, ev rotationEvent) error {
	if ev.SecretID != r.redisSecret {
		return fmt.Errorf("rotator: asked to rotate %s, which is not the Redis AUTH secret", ev.SecretID)
	}
	d, err := r.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(ev.SecretID)})
	if err != nil {
		return fmt.Errorf("rotator: describe secret: %w", err)
	}
	if !aws.ToBool(d.RotationEnabled) {
		return errors.New("rotator: rotation is not enabled on the secret")
	}
	stages, ok := d.VersionIdsToStages[ev.ClientRequestToken]
	if !ok {
		return fmt.Errorf("rotator: version %s is not a version of the secret", ev.ClientRequestToken)
	}
	if has(stages, "AWSCURRENT") {
		r.log.Info("version already current", "step", ev.Step)
		return nil
	}
	if !has(stages, "AWSPENDING") {
		return fmt.Errorf("rotator: version %s is not pending", ev.ClientRequestToken)
	}
	switch ev.Step {
	case "createSecret":
		return r.createSecret(ctx, ev)
	case "setSecret":
		return r.setSecret(ctx, ev)
	case "testSecret":
		return r.testSecret(ctx, ev)
	case "finishSecret":
		return r.finishSecret(ctx, ev, d)
	}
	return fmt.Errorf("rotator: unknown step %q", ev.Step)
}

// createSecret generates the new token as the pending version, once.
func (r *rotator) createSecret(ctx context.Context, ev rotationEvent) error {
	if _, err := r.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ev.SecretID), VersionStage: aws.String("AWSCURRENT")}); err != nil {
		return fmt.Errorf("rotator: current version: %w", err)
	}
	_, err := r.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(ev.SecretID), VersionId: aws.String(ev.ClientRequestToken), VersionStage: aws.String("AWSPENDING"),
	})
	if err == nil {
		return nil // a retried step: the pending value exists
	}
	var nf *smtypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		return fmt.Errorf("rotator: pending version: %w", err)
	}
	// Letters and digits only: every one is valid in an AUTH token.
	pw, err := r.sm.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{
		PasswordLength: aws.Int64(64), ExcludePunctuation: aws.Bool(true), IncludeSpace: aws.Bool(false),
	})
	if err != nil {
		return fmt.Errorf("rotator: random token: %w", err)
	}
	_, err = r.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(ev.SecretID),
		ClientRequestToken: aws.String(ev.ClientRequestToken),
		SecretString:       pw.RandomPassword,
		VersionStages:      []string{"AWSPENDING"},
	})
	if err != nil {
		return fmt.Errorf("rotator: put pending version: %w", err)
	}
	r.log.Info("created pending token")
	return nil
}

// setSecret adds the pending token to the replication group. ROTATE keeps the current
// token valid beside it, so running tasks keep working until they are replaced.
func (r *rotator) setSecret(ctx context.Context, ev rotationEvent) error {
	pending, err := r.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(ev.SecretID), VersionId: aws.String(ev.ClientRequestToken), VersionStage: aws.String("AWSPENDING"),
	})
	if err != nil {
		return fmt.Errorf("rotator: pending version: %w", err)
	}
	rg, err := r.waitAvailable(ctx)
	if err != nil {
		return err
	}
	if tokenSetAfter(rg, pending.CreatedDate) {
		r.log.Info("pending token already set on the replication group")
		return nil // a retried step: do not rotate twice, which would retire the current token
	}
	_, err = r.ec.ModifyReplicationGroup(ctx, &elasticache.ModifyReplicationGroupInput{
		ReplicationGroupId:      aws.String(r.group),
		AuthToken:               pending.SecretString,
		AuthTokenUpdateStrategy: ectypes.AuthTokenUpdateStrategyTypeRotate,
		ApplyImmediately:        aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("rotator: modify replication group: %w", err)
	}
	if _, err := r.waitAvailable(ctx); err != nil {
		return err
	}
	r.log.Info("pending token added to the replication group")
	return nil
}

// testSecret checks that the replication group took the pending token. The function is
// outside the VPC and does not connect to Redis; the new deployment started by
// finishSecret is the end-to-end test, and the deployment circuit breaker rolls it back
// (to tasks holding the still-valid previous token) if it fails.
func (r *rotator) testSecret(ctx context.Context, ev rotationEvent) error {
	pending, err := r.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(ev.SecretID), VersionId: aws.String(ev.ClientRequestToken), VersionStage: aws.String("AWSPENDING"),
	})
	if err != nil {
		return fmt.Errorf("rotator: pending version: %w", err)
	}
	rg, err := r.describe(ctx)
	if err != nil {
		return err
	}
	if !aws.ToBool(rg.AuthTokenEnabled) || aws.ToString(rg.Status) != "available" || !tokenSetAfter(rg, pending.CreatedDate) {
		return fmt.Errorf("rotator: replication group %s has not taken the pending token (status %s)", r.group, aws.ToString(rg.Status))
	}
	return nil
}

// finishSecret makes the pending version current and replaces the tasks.
func (r *rotator) finishSecret(ctx context.Context, ev rotationEvent, d *secretsmanager.DescribeSecretOutput) error {
	current := ""
	for id, stages := range d.VersionIdsToStages {
		if has(stages, "AWSCURRENT") {
			current = id
		}
	}
	_, err := r.sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:            aws.String(ev.SecretID),
		VersionStage:        aws.String("AWSCURRENT"),
		MoveToVersionId:     aws.String(ev.ClientRequestToken),
		RemoveFromVersionId: aws.String(current),
	})
	if err != nil {
		return fmt.Errorf("rotator: make the new token current: %w", err)
	}
	r.log.Info("new token is current: redeploying", "services", r.services)
	return r.redeploy(ctx)
}

// redeploy starts a new deployment of every service, which reads the secrets anew.
func (r *rotator) redeploy(ctx context.Context) error {
	var errs []error
	for _, s := range r.services {
		_, err := r.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{
			Cluster: aws.String(r.cluster), Service: aws.String(s), ForceNewDeployment: true,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("rotator: redeploy %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

func (r *rotator) describe(ctx context.Context) (*ectypes.ReplicationGroup, error) {
	out, err := r.ec.DescribeReplicationGroups(ctx, &elasticache.DescribeReplicationGroupsInput{ReplicationGroupId: aws.String(r.group)})
	if err != nil {
		return nil, fmt.Errorf("rotator: describe replication group: %w", err)
	}
	if len(out.ReplicationGroups) != 1 {
		return nil, fmt.Errorf("rotator: replication group %s not found", r.group)
	}
	return &out.ReplicationGroups[0], nil
}

// waitAvailable waits until the replication group is not modifying.
func (r *rotator) waitAvailable(ctx context.Context) (*ectypes.ReplicationGroup, error) {
	deadline := time.Now().Add(r.maxWait)
	for {
		rg, err := r.describe(ctx)
		if err != nil {
			return nil, err
		}
		if aws.ToString(rg.Status) == "available" {
			return rg, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("rotator: replication group %s still %s after %s", r.group, aws.ToString(rg.Status), r.maxWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(r.pollEvery):
		}
	}
}

func tokenSetAfter(rg *ectypes.ReplicationGroup, created *time.Time) bool {
	return rg.AuthTokenLastModifiedDate != nil && created != nil && rg.AuthTokenLastModifiedDate.After(*created)
}

func has(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
