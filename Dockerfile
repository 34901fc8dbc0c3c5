# dcsaudit in a container, for scheduled audits. Installs through the same script as the README.
#   docker build -t dcsaudit .
#   docker run --rm -v "$PWD/site:/site:ro" -v "$PWD/out:/out" dcsaudit scan /site/deployment.yaml --out /out/$(date +%F)
FROM debian:bookworm-slim

COPY . /opt/dcsaudit
WORKDIR /opt/dcsaudit
# Runtime install only (no dev extras, not editable); apt lists dropped to keep the image small.
RUN DCSAUDIT_EXTRAS= DCSAUDIT_EDITABLE= bash scripts/setup.sh \
    && rm -rf /var/lib/apt/lists/* /root/.cache

# Scans run as a non-root user: nmap does TCP connect scans; UDP inventory is recorded as not run.
RUN useradd --system --create-home --home-dir /home/dcsaudit dcsaudit \
    && mkdir -p /out && chown dcsaudit /out
ENV PATH=/opt/dcsaudit/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
USER dcsaudit
WORKDIR /home/dcsaudit
ENTRYPOINT ["dcsaudit"]
CMD ["demo", "--out", "/out"]
