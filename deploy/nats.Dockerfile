# quiniela-nats:<version>, the stack's NATS server by default: nats-server
# built from the nats-server/v2 module go.mod requires (the server the tests
# run; make docker-image-nats tags it with that version), so nothing is
# pulled, plus a static busybox for the healthcheck's wget (and cat, sh, to
# look into volumes). The build context holds only the two binaries:
#
#	nats-server   CGO_ENABLED=0 go build github.com/nats-io/nats-server/v2
#	busybox       a static busybox (Debian: busybox-static, /bin/busybox)
FROM scratch
COPY nats-server /bin/nats-server
COPY busybox /bin/busybox
# Exec form: there is no shell yet. Links wget, cat, sh, ... to busybox.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
EXPOSE 4222 8222
# The same check as deploy/compose.yaml's, for a plain "docker run".
HEALTHCHECK --interval=5s --timeout=3s CMD ["wget", "-q", "-O", "/dev/null", "http://localhost:8222/healthz"]
ENTRYPOINT ["/bin/nats-server"]
# -m: monitoring on 8222, which the healthcheck asks.
CMD ["-m", "8222"]
