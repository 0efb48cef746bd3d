#!/bin/sh
# Mirrors the official rabbitmq image's entrypoint for what compose uses: options alone run the
# server, and root drops to user rabbitmq. RABBITMQ_DEFAULT_{USER,PASS,VHOST} need nothing here:
# the server itself reads them on its first boot (empty database), as in the official image.
set -eu
data=/var/lib/rabbitmq

case "${1:-}" in
    -*) set -- rabbitmq-server "$@" ;;
esac
if [ "${1:-}" != rabbitmq-server ]; then
    exec "$@"
fi
shift
# Debian's /usr/sbin/rabbitmq-server wrapper sends the log to a file; run the server itself.
set -- /usr/lib/rabbitmq/bin/rabbitmq-server "$@"

if [ "$(id -u)" = 0 ]; then
    chown -R rabbitmq:rabbitmq "$data" /etc/rabbitmq
    # Made before the server starts, so a CLI call (the healthcheck) never makes a root-owned one.
    if [ ! -f "$data/.erlang.cookie" ]; then
        # shellcheck disable=SC2016  # $1 is the inner shell's
        setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups sh -c \
            'umask 077; tr -dc A-Z </dev/urandom | head -c 32 >"$1"' sh "$data/.erlang.cookie"
    fi
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
fi
exec "$@"
