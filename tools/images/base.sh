#!/usr/bin/env bash
# Build the local Debian bookworm base images for hosts that cannot pull from a registry.
#
#   llmwrap/debian:bookworm        debootstrap --variant=minbase, imported with `docker import`
#   llmwrap/python:3.11-bookworm   the above plus Debian's python3 (3.11), python3-venv
#
# Backend and worker build FROM the second via `--build-arg BASE_IMAGE=...`; the RabbitMQ and
# Redis images build FROM the first via `--build-arg DEBIAN_IMAGE=...`.
# Idempotent: an image that exists already is kept; --force rebuilds both.
# Needs root (debootstrap, installed with apt-get when missing) and a Debian mirror
# (DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEBIAN_IMAGE=${DEBIAN_IMAGE:-llmwrap/debian:bookworm}
PYTHON_IMAGE=${PYTHON_IMAGE:-llmwrap/python:3.11-bookworm}
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
FORCE=0

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; }
log() { echo "[images/base] $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) log "unknown argument: $1"; usage >&2; exit 2 ;;
  esac
  shift
done

build_debian() {
  if [ "$FORCE" = 0 ] && have_image "$DEBIAN_IMAGE"; then
    log "$DEBIAN_IMAGE exists, kept"
    return
  fi
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
  if ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || { log "debootstrap is missing (Debian/Ubuntu: apt-get install debootstrap)"; exit 1; }
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
      || { log "could not install debootstrap (apt-get install debootstrap)"; exit 1; }
  fi
  local start=$SECONDS rootfs
  rootfs=$(mktemp -d /var/tmp/llmwrap-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap --variant=minbase $SUITE ($DEBIAN_MIRROR)"
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; log "debootstrap failed (full log: $rootfs.log)"; exit 1; }
  rm -f "$rootfs.log"

  # What Docker's official debian images carry (debuerreotype's "minimizing" config): no daemons
  # started by package scripts, no docs/man pages/locales, no apt caches left in layers.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
CFG
  cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $SUITE-security main
SRC
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE" - "$DEBIAN_IMAGE" >/dev/null
  log "built $DEBIAN_IMAGE in $((SECONDS - start)) s"
}

build_python() {
  if [ "$FORCE" = 0 ] && have_image "$PYTHON_IMAGE"; then
    log "$PYTHON_IMAGE exists, kept"
    return
  fi
  local start=$SECONDS
  docker build -q --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$PYTHON_IMAGE" "$HERE/python" >/dev/null
  log "built $PYTHON_IMAGE in $((SECONDS - start)) s"
}

build_debian
build_python
