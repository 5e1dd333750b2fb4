# The uptime validator coordinator: one static binary on a distroless base.
# Build reproducibly: the same source and Go version give the same binary
# (-trimpath, no VCS stamp, no build id). The version and commit are passed
# in: docker build --build-arg VERSION=v1.2.0 --build-arg REVISION=$(git rev-parse HEAD) .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags="-s -w -buildid= -X github.com/delegation-program/uptime-coordinator/internal/buildinfo.version=${VERSION} -X github.com/delegation-program/uptime-coordinator/internal/buildinfo.revision=${REVISION}" \
      -o /out/coordinator ./cmd/coordinator
# CA bundle for AWS Keyspaces (Amazon Trust Services roots and the Starfield
# Class 2 root the original shipped), from Debian's ca-certificates.
RUN mkdir -p /out/certs && cd /usr/share/ca-certificates/mozilla && \
    cat Amazon_Root_CA_1.crt Amazon_Root_CA_2.crt Amazon_Root_CA_3.crt Amazon_Root_CA_4.crt \
        Starfield_Class_2_CA.crt Starfield_Services_Root_Certificate_Authority_-_G2.crt \
        > /out/certs/keyspaces-ca.pem

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/coordinator /usr/local/bin/coordinator
COPY --from=build /out/certs/keyspaces-ca.pem /etc/ssl/keyspaces/keyspaces-ca.pem
# The same bundle where the Python coordinator's image kept its certificate,
# so a values file that sets SSL_CERTFILE to that path keeps working.
COPY --from=build /out/certs/keyspaces-ca.pem /usr/src/app/uptime_service_validation/database/aws_keyspaces/cert/sf-class2-root.crt
ENV SSL_CERTFILE=/etc/ssl/keyspaces/keyspaces-ca.pem
USER nonroot:nonroot
EXPOSE 8080
# Database tasks: docker run IMAGE coordinator create-database (init-database, ...)
CMD ["coordinator", "run"]
