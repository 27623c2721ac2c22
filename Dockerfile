# onair production image: a static cgo build (SQLite is compiled in) on a
# distroless base, running as a non-root user with the database on a volume.
# The secrets come from the environment (ZOOM_WEBHOOK_SECRET_TOKEN,
# ONAIR_TOKEN_SECRET, ...); without ZOOM_WEBHOOK_SECRET_TOKEN onair would
# start in dev mode, which refuses the non-loopback address set here.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=1 go build -trimpath -tags "osusergo netgo sqlite_omit_load_extension" -ldflags "-s -w -X main.version=${VERSION} -linkmode external -extldflags -static" -o /out/onair ./cmd/onair
RUN /out/onair version && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/onair /onair
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV ONAIR_ADDR=:8080 \
    ONAIR_DB=/data/onair.db
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/onair", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/onair"]
CMD ["serve"]
