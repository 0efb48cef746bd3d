#!/usr/bin/env bash
# Idempotent: Debian's redis-server and rabbitmq-server binaries (tests start private instances;
# the system services are not started), wrk, the benchmarks' HTTP client, promtool and faketime.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# promtool (Debian's prometheus package): the alert rules' unit tests. The service is not started.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# libfaketime: the clock-skew tests run a process whose wall clock is off, as on a host without NTP.
command -v faketime >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup/servers] installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
