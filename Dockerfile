# Build: a static binary (pion, go-rtmp and the rest are pure Go).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /castbridge ./cmd/castbridge

# Run: CA certificates for rtmps:// ingests. Nothing else: audio is
# decoded and encoded in-process.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 castbridge \
 && install -d -o castbridge /recordings
COPY --from=build /castbridge /usr/local/bin/castbridge
USER castbridge
# API, ICE (one UDP port for every session). The built-in RTMP ingest
# listens on the container's loopback only (the gateway records to it); to
# open it, set CASTBRIDGE_LOCAL_INGEST=0.0.0.0:1935 together with
# CASTBRIDGE_LOCAL_INGEST_KEY (castbridge refuses to start without one) and
# publish port 1935.
EXPOSE 8080/tcp 8189/udp
ENV CASTBRIDGE_RECORDINGS_DIR=/recordings CASTBRIDGE_LOCAL_INGEST=127.0.0.1:1935
VOLUME /recordings
ENTRYPOINT ["castbridge"]
