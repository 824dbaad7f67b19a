# syntax=docker/dockerfile:1
#
# registrar's container image: one static binary (CGO_ENABLED=0, pure-Go SQLite) on
# distroless "static", running as the unprivileged user 65532 ("nonroot") with a
# read-only root filesystem. The infrastructure in infra/ runs it on ECS Fargate and
# pins it by digest; infra's tests read this file to keep the paths below in step with
# the task definition.
#
#   docker buildx build --platform linux/arm64 -t ACCOUNT.dkr.ecr.REGION.amazonaws.com/registrar:TAG --push .
#
# The build stage cross-compiles for the target platform, so no emulation is needed.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The same command as infra/check-binary.sh, which CI runs because it cannot run Docker.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -tags timetzdata -ldflags "-s -w -X main.version=${VERSION}" -o /out/registrar ./cmd/registrar

# Everything the container may write is a mount point owned by the runtime user:
#   /var/lib/registrar  REGISTRAR_DATA, an ECS task volume (scratch; no records on AWS)
#   /documents          REGISTRAR_DOCUMENTS_DIR, the EFS access point
#   /tmp                scratch, an ECS task volume
# ECS copies a mount point's ownership from the image into a fresh task volume.
RUN mkdir -p /out/writable/var/lib/registrar /out/writable/documents /out/writable/tmp \
    && chmod 0700 /out/writable/var/lib/registrar /out/writable/documents \
    && chmod 1777 /out/writable/tmp

# Amazon RDS's CA bundle, for REGISTRAR_DATABASE_CA_FILE with sslmode=verify-full.
ADD https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /out/etc/registrar/rds-global-bundle.pem
RUN chmod 0444 /out/etc/registrar/rds-global-bundle.pem

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build --chown=65532:65532 /out/writable/ /
COPY --from=build /out/etc/registrar/ /etc/registrar/
COPY --from=build /out/registrar /usr/local/bin/registrar
USER 65532:65532
ENV REGISTRAR_DATA=/var/lib/registrar
# Writable places under a read-only root: task volumes on ECS, anonymous volumes under a
# plain `docker run --read-only`.
VOLUME ["/var/lib/registrar", "/documents", "/tmp"]
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/registrar"]
CMD ["serve"]
