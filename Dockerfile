# dcsaudit runtime image, for scheduled audits (issue 13). Multi-stage: the build stage makes the venv
# with scripts/install-runtime.sh; the runtime stage has only what a scan needs (Python, the venv, nmap,
# openssl, CA bundle), no compiler, no pip cache, no tests and no test peers (DCMTK, Orthanc, rsyslog,
# testssl.sh stay out: scripts/setup.sh installs those for development and CI).
#
#   docker build -t dcsaudit .
#   mkdir -p out && docker run --rm --user "$(id -u):$(id -g)" \
#       -v "$PWD/site:/site:ro" -v "$PWD/out:/out" \
#       dcsaudit scan /site/deployment.yaml --out /out --out-dir-per-run
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/out:/out" dcsaudit history --store sqlite:////out/dcsaudit-history.sqlite
#
# The image runs as the numeric user 10001:10001 (Kubernetes runAsNonRoot can verify a number, not a
# name). `--user "$(id -u):$(id -g)"` runs it as you instead, so a bind mount you own is writable;
# outputs are written with the mode the umask gives (0644 under the default 022).

FROM debian:bookworm-slim AS build
COPY scripts/install-runtime.sh /src/scripts/install-runtime.sh
RUN bash /src/scripts/install-runtime.sh --build-debs
COPY pyproject.toml README.md /src/
COPY dcsaudit /src/dcsaudit
COPY checks /src/checks
COPY templates /src/templates
COPY configs /src/configs
RUN bash /src/scripts/install-runtime.sh /

FROM debian:bookworm-slim AS runtime
COPY scripts/install-runtime.sh /tmp/install-runtime.sh
RUN bash /tmp/install-runtime.sh --debs && bash /tmp/install-runtime.sh --user && rm /tmp/install-runtime.sh
COPY --from=build /opt/dcsaudit /opt/dcsaudit
ENV PATH=/opt/dcsaudit/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN mkdir -p /out && chown 10001:10001 /out
USER 10001:10001
WORKDIR /out
VOLUME ["/out"]
ENTRYPOINT ["dcsaudit"]
CMD ["demo", "--out", "/out", "--out-dir-per-run"]
