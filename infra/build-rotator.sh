#!/usr/bin/env bash
# Builds the rotator Lambda function (infra/rotator) into build/rotator.zip, the archive
# the stack deploys (registrar:rotatorArchive). Run it before `pulumi up`.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
rm -f build/bootstrap build/rotator.zip
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -buildvcs=false -tags lambda.norpc -ldflags "-s -w" -o build/bootstrap ./rotator
(cd build && zip -q -X rotator.zip bootstrap)
echo "built $(pwd)/build/rotator.zip"
