# Build: a static binary (pion, go-rtmp and the rest are pure Go).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /castbridge ./cmd/castbridge && mkdir /recordings

# Run: CA certificates for rtmps:// ingests, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /castbridge /castbridge
COPY --from=build --chown=nonroot:nonroot /recordings /recordings
# API, ICE (one UDP port for every session), built-in RTMP ingest.
EXPOSE 8080/tcp 8189/udp 1935/tcp
ENV CASTBRIDGE_RECORDINGS_DIR=/recordings CASTBRIDGE_LOCAL_INGEST=0.0.0.0:1935
VOLUME /recordings
ENTRYPOINT ["/castbridge"]
