#!/bin/sh
# Mirrors the official redis image's entrypoint: options (or a .conf file) alone run redis-server,
# root drops to user redis, and without a config file that sets it, protected mode is off (the
# container's network is the boundary, as in the official image).
set -eu

case "${1:-}" in
    -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "${1:-}" = redis-server ]; then
    [ "$(umask)" != 0022 ] || umask 0077
    protected=yes
    if [ -f "${2:-}" ] && grep -q '^protected-mode' "$2"; then
        protected=
    fi
    if [ -n "$protected" ]; then
        set -- "$@" --protected-mode no
    fi
fi
exec "$@"
