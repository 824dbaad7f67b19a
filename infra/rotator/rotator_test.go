package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/elasticache"
	ectypes "github.com/aws/aws-sdk-go-v2/service/elasticache/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

const (
	redisARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:registrar/dev/redis-auth-AbCdEf"
	dbARN    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-1-AbCdEf"
)

// fakeAWS is Secrets Manager, ElastiCache and ECS in memory: one secret with versions
// and stages, one replication group that holds at most two tokens (ROTATE keeps the
// newest previous one), and a log of redeployed services.
type fakeAWS struct {
	now      time.Time
	versions map[string]string // version id -> value
	created  map[string]time.Time
	stages   map[string][]string // version id -> stages
	rotation bool

	tokens     []string // valid AUTH tokens, oldest first
	tokenSetAt *time.Time
	modifying  int // DescribeReplicationGroups calls left before "available"
	modifies   int

	redeployed []string
}

func newFake() *fakeAWS {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &fakeAWS{
		now:      t0,
		versions: map[string]string{"v1": "token-one"},
		created:  map[string]time.Time{"v1": t0},
		stages:   map[string][]string{"v1": {"AWSCURRENT"}},
		rotation: true,
		tokens:   []string{"token-one"},
	}
}

func (f *fakeAWS) tick() time.Time { f.now = f.now.Add(time.Minute); return f.now }

func (f *fakeAWS) DescribeSecret(_ context.Context, in *secretsmanager.DescribeSecretInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error) {
	st := map[string][]string{}
	for k, v := range f.stages {
		st[k] = append([]string(nil), v...)
	}
	return &secretsmanager.DescribeSecretOutput{ARN: in.SecretId, RotationEnabled: aws.Bool(f.rotation), VersionIdsToStages: st}, nil
}

func (f *fakeAWS) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	for id, stages := range f.stages {
		if in.VersionId != nil && *in.VersionId != id {
			continue
		}
		if _, ok := f.versions[id]; !ok {
			continue // a version Secrets Manager labelled but nobody has put a value in yet
		}
		for _, s := range stages {
			if in.VersionStage == nil || *in.VersionStage == s {
				c := f.created[id]
				return &secretsmanager.GetSecretValueOutput{VersionId: aws.String(id), SecretString: aws.String(f.versions[id]), CreatedDate: &c}, nil
			}
		}
	}
	return nil, &smtypes.ResourceNotFoundException{Message: aws.String("no such version")}
}

func (f *fakeAWS) GetRandomPassword(_ context.Context, in *secretsmanager.GetRandomPasswordInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetRandomPasswordOutput, error) {
	if !aws.ToBool(in.ExcludePunctuation) || aws.ToInt64(in.PasswordLength) < 32 {
		return nil, io.ErrUnexpectedEOF
	}
	return &secretsmanager.GetRandomPasswordOutput{RandomPassword: aws.String(strings.Repeat("N", int(*in.PasswordLength)))}, nil
}

func (f *fakeAWS) PutSecretValue(_ context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	id := *in.ClientRequestToken
	f.versions[id] = *in.SecretString
	f.created[id] = f.tick()
	f.stages[id] = in.VersionStages
	return &secretsmanager.PutSecretValueOutput{}, nil
}

func (f *fakeAWS) UpdateSecretVersionStage(_ context.Context, in *secretsmanager.UpdateSecretVersionStageInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	if from := aws.ToString(in.RemoveFromVersionId); from != "" {
		var kept []string
		for _, s := range f.stages[from] {
			if s != *in.VersionStage {
				kept = append(kept, s)
			}
		}
		f.stages[from] = append(kept, "AWSPREVIOUS")
	}
	to := *in.MoveToVersionId
	var kept []string
	for _, s := range f.stages[to] {
		if s != "AWSPENDING" {
			kept = append(kept, s)
		}
	}
	f.stages[to] = append(kept, *in.VersionStage)
	return &secretsmanager.UpdateSecretVersionStageOutput{}, nil
}

func (f *fakeAWS) DescribeReplicationGroups(_ context.Context, in *elasticache.DescribeReplicationGroupsInput, _ ...func(*elasticache.Options)) (*elasticache.DescribeReplicationGroupsOutput, error) {
	status := "available"
	if f.modifying > 0 {
		f.modifying--
		status = "modifying"
	}
	return &elasticache.DescribeReplicationGroupsOutput{ReplicationGroups: []ectypes.ReplicationGroup{{
		ReplicationGroupId: in.ReplicationGroupId, Status: aws.String(status), AuthTokenEnabled: aws.Bool(true), AuthTokenLastModifiedDate: f.tokenSetAt,
	}}}, nil
}

func (f *fakeAWS) ModifyReplicationGroup(_ context.Context, in *elasticache.ModifyReplicationGroupInput, _ ...func(*elasticache.Options)) (*elasticache.ModifyReplicationGroupOutput, error) {
	if in.AuthTokenUpdateStrategy != ectypes.AuthTokenUpdateStrategyTypeRotate || !aws.ToBool(in.ApplyImmediately) {
		return nil, io.ErrUnexpectedEOF
	}
	f.modifies++
	f.tokens = append(f.tokens, *in.AuthToken)
	if len(f.tokens) > 2 {
		f.tokens = f.tokens[len(f.tokens)-2:]
	}
	t := f.tick()
	f.tokenSetAt = &t
	f.modifying = 2
	return &elasticache.ModifyReplicationGroupOutput{}, nil
}

func (f *fakeAWS) UpdateService(_ context.Context, in *ecs.UpdateServiceInput, _ ...func(*ecs.Options)) (*ecs.UpdateServiceOutput, error) {
	if !in.ForceNewDeployment {
		return nil, io.ErrUnexpectedEOF
	}
	f.redeployed = append(f.redeployed, *in.Service)
	return &ecs.UpdateServiceOutput{}, nil
}

// pending is what RotateSecret does before calling the function: a new version id
// labelled AWSPENDING, without a value.
func pending(f *fakeAWS, id string) { f.stages[id] = []string{"AWSPENDING"} }

func newRotator(f *fakeAWS) *rotator {
	return &rotator{sm: f, ec: f, ecs: f, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		group: "registrar-dev-cache", redisSecret: redisARN, dbSecret: dbARN, cluster: "registrar-dev-cluster",
		services: []string{"registrar-dev-serve", "registrar-dev-worker"}, pollEvery: time.Millisecond, maxWait: time.Second}
}

func step(t *testing.T, r *rotator, name, token string) error {
	t.Helper()
	b, _ := json.Marshal(rotationEvent{SecretID: redisARN, ClientRequestToken: token, Step: name})
	return r.handle(context.Background(), b)
}

func rotateFully(t *testing.T, r *rotator, token string) {
	t.Helper()
	for _, s := range []string{"createSecret", "setSecret", "testSecret", "finishSecret"} {
		if err := step(t, r, s, token); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestRotationAddsTheNewTokenBesideTheOldAndRedeploys(t *testing.T) {
	f := newFake()
	r := newRotator(f)
	pending(f, "v2")
	rotateFully(t, r, "v2")

	if got := f.versions["v2"]; len(got) != 64 {
		t.Fatalf("new token %q, want 64 characters", got)
	}
	if strings.Join(f.tokens, ",") != "token-one,"+f.versions["v2"] {
		t.Errorf("valid tokens %v, want the old and the new one", f.tokens)
	}
	if got := strings.Join(f.stages["v2"], ","); got != "AWSCURRENT" {
		t.Errorf("new version stages %s, want AWSCURRENT", got)
	}
	if got := strings.Join(f.redeployed, ","); got != "registrar-dev-serve,registrar-dev-worker" {
		t.Errorf("redeployed %s, want both services", got)
	}
}

func TestRetriedStepsDoNotRotateTwice(t *testing.T) {
	f := newFake()
	r := newRotator(f)
	pending(f, "v2")
	for _, s := range []string{"createSecret", "createSecret", "setSecret", "setSecret", "testSecret"} {
		if err := step(t, r, s, "v2"); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if f.modifies != 1 {
		t.Errorf("ModifyReplicationGroup called %d times, want 1 (a second ROTATE would retire the current token)", f.modifies)
	}
	if !contains(f.tokens, "token-one") {
		t.Errorf("the current token was retired: %v", f.tokens)
	}
}

func TestRefusesWhatItMustNotTouch(t *testing.T) {
	f := newFake()
	r := newRotator(f)
	pending(f, "v2")
	for name, ev := range map[string]rotationEvent{
		"another secret":     {SecretID: dbARN, ClientRequestToken: "v2", Step: "createSecret"},
		"an unknown step":    {SecretID: redisARN, ClientRequestToken: "v2", Step: "dropEverything"},
		"an unknown version": {SecretID: redisARN, ClientRequestToken: "v9", Step: "createSecret"},
	} {
		b, _ := json.Marshal(ev)
		if err := r.handle(context.Background(), b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	f.rotation = false
	if err := step(t, r, "createSecret", "v2"); err == nil {
		t.Error("rotation disabled: accepted")
	}
}

func TestTestSecretFailsIfTheGroupDidNotTakeTheToken(t *testing.T) {
	f := newFake()
	r := newRotator(f)
	pending(f, "v2")
	if err := step(t, r, "createSecret", "v2"); err != nil {
		t.Fatal(err)
	}
	if err := step(t, r, "testSecret", "v2"); err == nil {
		t.Error("testSecret passed before setSecret")
	}
}

func TestDatabaseRotationRedeploysOnlyForTheDatabaseSecret(t *testing.T) {
	f := newFake()
	r := newRotator(f)
	ev := func(secret string) json.RawMessage {
		return json.RawMessage(`{"detail-type":"AWS Service Event via CloudTrail","source":"aws.secretsmanager",` +
			`"detail":{"eventSource":"secretsmanager.amazonaws.com","eventName":"RotationSucceeded","additionalEventData":{"SecretId":"` + secret + `"}}}`)
	}
	if err := r.handle(context.Background(), ev("arn:aws:secretsmanager:us-east-1:123456789012:secret:other")); err != nil {
		t.Fatal(err)
	}
	if len(f.redeployed) != 0 {
		t.Fatalf("redeployed for another secret: %v", f.redeployed)
	}
	if err := r.handle(context.Background(), ev(dbARN)); err != nil {
		t.Fatal(err)
	}
	if len(f.redeployed) != 2 {
		t.Errorf("redeployed %v, want both services", f.redeployed)
	}
	if err := r.handle(context.Background(), json.RawMessage(`{"hello":"world"}`)); err == nil {
		t.Error("an unrelated event was accepted")
	}
}

func TestFromEnvironmentNeedsEverything(t *testing.T) {
	if _, err := fromEnvironment(context.Background(), func(string) string { return "" }); err == nil {
		t.Error("empty environment accepted")
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
