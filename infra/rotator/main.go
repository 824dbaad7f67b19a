package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/elasticache"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

func main() {
	r, err := fromEnvironment(context.Background(), os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(r.handle)
}

// fromEnvironment builds the rotator from the Lambda's environment, which the stack
// sets (infra/rotation.go).
func fromEnvironment(ctx context.Context, getenv func(string) string) (*rotator, error) {
	r := &rotator{
		log:         slog.New(slog.NewJSONHandler(os.Stdout, nil)),
		group:       getenv("REPLICATION_GROUP_ID"),
		redisSecret: getenv("REDIS_SECRET_ARN"),
		dbSecret:    getenv("DB_SECRET_ARN"),
		cluster:     getenv("ECS_CLUSTER"),
		services:    splitList(getenv("ECS_SERVICES")),
		pollEvery:   15 * time.Second,
		maxWait:     12 * time.Minute, // within the Lambda's 15-minute limit
	}
	if r.group == "" || r.redisSecret == "" || r.dbSecret == "" || r.cluster == "" || len(r.services) == 0 {
		return nil, errors.New("rotator: REPLICATION_GROUP_ID, REDIS_SECRET_ARN, DB_SECRET_ARN, ECS_CLUSTER and ECS_SERVICES are required")
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotator: AWS configuration: %w", err)
	}
	r.sm = secretsmanager.NewFromConfig(cfg)
	r.ec = elasticache.NewFromConfig(cfg)
	r.ecs = ecs.NewFromConfig(cfg)
	return r, nil
}
