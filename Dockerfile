# bootpilot server image. Build: docker build -t bootpilot .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/bootpilot ./cmd/bootpilot

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bootpilot /usr/local/bin/bootpilot
VOLUME /var/lib/bootpilot
EXPOSE 8443
ENTRYPOINT ["bootpilot", "serve", "--data-dir", "/var/lib/bootpilot"]
