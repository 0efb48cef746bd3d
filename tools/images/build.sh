#!/usr/bin/env bash
# Build the stack's images; idempotent (Docker's layer cache; an existing local base is kept).
#
#   bash tools/images/build.sh [--offline | --online] [--with-gpu] [--only NAMES]
#                              [--ca-cert FILE] [--wheels DIR]
#
#   --offline      build FROM local Debian bases made by base.sh (debootstrap; no registry needed):
#                  llmwrap/python:3.11-bookworm for backend/worker, llmwrap/debian:bookworm for
#                  rabbitmq/redis. Without --offline/--online the script tries
#                  `docker pull python:3.11-slim-bookworm` and falls back to this, saying so.
#   --online       the official bases (python:3.11-slim-bookworm, debian:bookworm-slim).
#   --with-gpu     also build llmwrap/worker-gpu (vLLM and CUDA torch from PyPI: several GB).
#   --only NAMES   comma-separated subset of: backend,worker-cpu,worker-gpu,rabbitmq,redis.
#   --ca-cert FILE extra CA certificate(s) (PEM) that pip inside the builds trusts, for a
#                  TLS-intercepting proxy; also LLMWRAP_CA_CERT.
#   --wheels DIR   local wheels offered to pip (--find-links), e.g. a CPU torch wheel where
#                  PyPI is reachable but download.pytorch.org is not; also LLMWRAP_WHEELS_DIR.
#                  Offline, the CPU worker needs one (or TORCH_INDEX_URL set to a mirror).
#
# Environment: TORCH_INDEX_URL (CPU torch index; default PyTorch's, empty offline), DEBIAN_MIRROR,
# DEBIAN_IMAGE and PYTHON_IMAGE (the local bases' tags, see base.sh), LLMWRAP_IMAGES_LOG_DIR
# (build logs; default build/images/ in the repository).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
EXTRAS=$HERE/extras
LOG_DIR=${LLMWRAP_IMAGES_LOG_DIR:-$REPO/build/images}
OFFICIAL_PYTHON=python:3.11-slim-bookworm
OFFICIAL_DEBIAN=debian:bookworm-slim
LOCAL_PYTHON=${PYTHON_IMAGE:-llmwrap/python:3.11-bookworm}
LOCAL_DEBIAN=${DEBIAN_IMAGE:-llmwrap/debian:bookworm}
ALL_NAMES=(backend worker-cpu worker-gpu rabbitmq redis)

mode=auto with_gpu=0 only=""
total_start=$SECONDS
ca_cert=${LLMWRAP_CA_CERT:-}
wheels=${LLMWRAP_WHEELS_DIR:-}

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; }
log() { echo "[images] $*" >&2; }
die() { log "$*"; exit 2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --offline) mode=offline ;;
    --online) mode=online ;;
    --with-gpu) with_gpu=1 ;;
    --only) [ $# -ge 2 ] || die "--only needs a value"; only=$2; shift ;;
    --only=*) only=${1#*=} ;;
    --ca-cert) [ $# -ge 2 ] || die "--ca-cert needs a file"; ca_cert=$2; shift ;;
    --ca-cert=*) ca_cert=${1#*=} ;;
    --wheels) [ $# -ge 2 ] || die "--wheels needs a directory"; wheels=$2; shift ;;
    --wheels=*) wheels=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# Which images, in build order.
names=()
if [ -n "$only" ]; then
  IFS=, read -r -a wanted <<<"$only"
  for w in "${wanted[@]}"; do
    [[ " ${ALL_NAMES[*]} " == *" $w "* ]] || die "--only: unknown image '$w' (known: ${ALL_NAMES[*]})"
  done
  for n in "${ALL_NAMES[@]}"; do
    if [[ " ${wanted[*]} " == *" $n "* ]]; then names+=("$n"); fi
  done
else
  for n in "${ALL_NAMES[@]}"; do
    if [ "$n" != worker-gpu ] || [ "$with_gpu" = 1 ]; then names+=("$n"); fi
  done
fi

docker info >/dev/null 2>&1 || die "no Docker engine answers (bash tools/setup/docker.sh starts one)"
version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$REPO/pyproject.toml" 2>/dev/null || echo 0.1.0)

# Online or offline: can the official base be had?
if [ "$mode" = auto ]; then
  if have_image "$OFFICIAL_PYTHON"; then
    mode=online
  elif timeout 120 docker pull -q "$OFFICIAL_PYTHON" >/dev/null 2>&1; then
    mode=online
  else
    log "registry unreachable (docker pull $OFFICIAL_PYTHON failed): falling back to the local Debian base, as with --offline"
    mode=offline
  fi
fi
if [ "$mode" = offline ]; then
  DEBIAN_IMAGE=$LOCAL_DEBIAN PYTHON_IMAGE=$LOCAL_PYTHON bash "$HERE/base.sh"
  python_base=$LOCAL_PYTHON debian_base=$LOCAL_DEBIAN
  torch_index=${TORCH_INDEX_URL-}
else
  python_base=$OFFICIAL_PYTHON debian_base=$OFFICIAL_DEBIAN
  torch_index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
fi

# Stage this run's extras (exactly these: what an earlier run staged is cleared).
find "$EXTRAS/ca" "$EXTRAS/wheels" -mindepth 1 ! -name .keep -delete
if [ -n "$ca_cert" ]; then
  [ -r "$ca_cert" ] || die "--ca-cert: cannot read $ca_cert"
  cp "$ca_cert" "$EXTRAS/ca/extra-ca.crt"
fi
if [ -n "$wheels" ]; then
  [ -d "$wheels" ] || die "--wheels: $wheels is not a directory"
  for whl in "$wheels"/*.whl; do
    [ -e "$whl" ] || continue
    ln -f "$whl" "$EXTRAS/wheels/" 2>/dev/null || cp "$whl" "$EXTRAS/wheels/"
  done
fi
if [[ " ${names[*]} " == *" worker-cpu "* ]] && [ -z "$torch_index" ] \
  && ! ls "$EXTRAS/wheels"/torch-*.whl >/dev/null 2>&1; then
  die "worker-cpu needs a CPU torch: --wheels DIR with a torch wheel, or TORCH_INDEX_URL=<index>"
fi

mkdir -p "$LOG_DIR"
log "mode: $mode (python base $python_base, debian base $debian_base)"
summary=()
for name in "${names[@]}"; do
  tag=llmwrap/$name:$version
  case "$name" in
    backend) args=(-f "$REPO/services/backend/Dockerfile" --build-arg "BASE_IMAGE=$python_base"
                   --build-arg "LLMWRAP_VERSION=$version" "$REPO") ;;
    worker-cpu) args=(-f "$REPO/services/worker/Dockerfile" --target cpu
                      --build-arg "BASE_IMAGE=$python_base" --build-arg "TORCH_INDEX_URL=$torch_index"
                      --build-arg "LLMWRAP_VERSION=$version" "$REPO") ;;
    worker-gpu) args=(-f "$REPO/services/worker/Dockerfile" --target gpu
                      --build-arg "BASE_IMAGE=$python_base" --build-arg "TORCH_INDEX_URL=$torch_index"
                      --build-arg "LLMWRAP_VERSION=$version" "$REPO") ;;
    rabbitmq) tag=llmwrap/rabbitmq:3.10-debian
              args=(--build-arg "DEBIAN_IMAGE=$debian_base" "$HERE/rabbitmq") ;;
    redis) tag=llmwrap/redis:7.0-debian
           args=(--build-arg "DEBIAN_IMAGE=$debian_base" "$HERE/redis") ;;
  esac
  start=$SECONDS
  old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  log "building $tag (log: $LOG_DIR/$name.log)"
  if ! docker build -t "$tag" "${args[@]}" >"$LOG_DIR/$name.log" 2>&1; then
    tail -30 "$LOG_DIR/$name.log" >&2
    die "building $tag failed (full log: $LOG_DIR/$name.log)"
  fi
  # The image this tag pointed at before is superseded: drop it unless something still uses it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  size=$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')
  summary+=("$(printf '%-32s %5d s  %s' "$tag" $((SECONDS - start)) "$size")")
done

echo "built ($mode, $((SECONDS - total_start)) s in all):"
printf '  %s\n' "${summary[@]}"
