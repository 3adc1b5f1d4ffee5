# natter-infra: NATS, Redis (and redis-sentinel) and haproxy from Debian's packages, for docker/compose.yml.
# The compose cluster needs no registry but Debian's; with a registry at hand the official
# nats, redis and haproxy images work as well (same commands, see docs/deploy.md).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server redis-server redis-sentinel haproxy \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && mkdir -p /data && chmod 1777 /data
