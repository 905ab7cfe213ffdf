#!/bin/sh
# install-env.sh REQUIREMENTS: make the environment (/opt/venv) match REQUIREMENTS, a pinned and
# hashed export of poetry.lock. uv installs only what is missing or different, so a layer on top
# of another holds only the difference. Build-only Debian packages (apt-build-packages.txt) are
# there for the install and removed after it. No bytecode is compiled here: Python writes it at
# run time under PYTHONPYCACHEPREFIX (see the Dockerfile), which keeps the image smaller.
set -e
build_packages=/opt/labdock/apt-build-packages.txt
apt-install.sh "$build_packages"
[ -x "$VIRTUAL_ENV/bin/python" ] || python -m venv --without-pip "$VIRTUAL_ENV"
with-index.sh uv pip sync --quiet --require-hashes "$1"
packages=$(sed 's/#.*//' "$build_packages" | tr -s ' \t' '\n\n' | sed '/^$/d')
if [ -n "$packages" ]; then
    # shellcheck disable=SC2086
    apt-get purge -y -qq --auto-remove $packages >/dev/null
fi
