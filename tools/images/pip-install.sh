#!/bin/sh
# `pip install` inside an image build, with the build's optional extras (staged by build.sh under
# tools/images/extras/, copied to $LLMWRAP_BUILD_EXTRAS):
#   ca/*.crt, ca/*.pem  extra CA certificates, appended to pip's own bundle, for builds behind a
#                       TLS-intercepting proxy;
#   wheels/*.whl        local wheels, offered to pip with --find-links (e.g. a CPU torch wheel
#                       where only PyPI is reachable).
# Only the build stage sees these: the runtime stage copies the finished venv, not /tmp.
set -eu
extras=${LLMWRAP_BUILD_EXTRAS:-/tmp/extras}

certs=$(find "$extras/ca" -maxdepth 1 -type f \( -name '*.crt' -o -name '*.pem' \) 2>/dev/null | sort)
if [ -n "$certs" ]; then
    bundle=/tmp/pip-ca-bundle.pem
    # shellcheck disable=SC2086  # one certificate file per word
    cat "$(python -c 'import pip._vendor.certifi as c; print(c.where())')" $certs >"$bundle"
    export PIP_CERT="$bundle"
fi
if ls "$extras/wheels"/*.whl >/dev/null 2>&1; then
    set -- --find-links "$extras/wheels" "$@"
fi
exec python -m pip install --no-cache-dir "$@"
