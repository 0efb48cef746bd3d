# Sourced by tools/test.sh and tools/demo.sh: defaults for image builds on hosts like this one.
# - Builds behind a TLS-intercepting proxy need the host's CA bundle (harmless elsewhere).
# - Where PyTorch's CPU index is unreachable, a local CPU torch wheel is offered to the build.
if [ -z "${LLMWRAP_CA_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export LLMWRAP_CA_CERT=/etc/ssl/certs/ca-certificates.crt
fi
if [ -z "${LLMWRAP_WHEELS_DIR:-}" ] && ls /opt/wheels/torch-*+cpu-*.whl >/dev/null 2>&1; then
  export LLMWRAP_WHEELS_DIR=/opt/wheels
fi
