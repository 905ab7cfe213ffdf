#!/bin/sh
# with-index.sh COMMAND...: runs COMMAND with this build's (or lock run's) package-index settings
# in the variables pip, uv and Poetry read: a PyPI mirror and a CA bundle for networks that
# intercept TLS. In builds both are BuildKit secrets (/run/secrets/pypi_mirror, ca_bundle), so a
# mirror URL with credentials is never recorded in the image; Poetry's containers get the mirror
# as PYPI_MIRROR_URL. Without them, PyPI as usual.
set -e
if [ -s /run/secrets/pypi_mirror ]; then
    PYPI_MIRROR_URL=$(cat /run/secrets/pypi_mirror)
fi
if [ -n "${PYPI_MIRROR_URL:-}" ]; then
    export PIP_INDEX_URL="$PYPI_MIRROR_URL" UV_DEFAULT_INDEX="$PYPI_MIRROR_URL" \
        POETRY_PYPI_MIRROR_URL="$PYPI_MIRROR_URL"
fi
if [ -s /run/secrets/ca_bundle ]; then
    export PIP_CERT=/run/secrets/ca_bundle REQUESTS_CA_BUNDLE=/run/secrets/ca_bundle \
        SSL_CERT_FILE=/run/secrets/ca_bundle
fi
exec "$@"
