# The central: its static binary (CGO_ENABLED=0) on an empty image. The build
# context holds only what is copied here (deploy/docker.mk prepares it):
#
#	central                  the binary
#	var/lib/quiniela/        an empty directory, the store's mount point
FROM scratch
COPY central /central
# Docker initialises a new named volume from the image's directory, owner
# included: the unprivileged user below can then write the store.
COPY --chown=65532:65532 var/lib/quiniela /var/lib/quiniela
USER 65532:65532
# Exec form: the Go binary is PID 1 and gets the SIGTERM of "docker stop"
# itself, so it shuts down gracefully (no shell in between to swallow it).
ENTRYPOINT ["/central"]
