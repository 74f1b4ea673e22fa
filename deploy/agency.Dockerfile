# An agency: its static binary (CGO_ENABLED=0) on an empty image. Its data
# file and config.yaml are mounted at run time (deploy/compose.yaml), never
# baked in. The build context holds only the binary, "agency".
FROM scratch
COPY agency /agency
USER 65532:65532
# Exec form: the Go binary is PID 1 and gets SIGTERM itself.
ENTRYPOINT ["/agency"]
