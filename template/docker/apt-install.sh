#!/bin/sh
# apt-install.sh FILE...: install the Debian packages listed in FILEs (one or more per line, `#`
# comments), then drop apt's lists. Nothing listed: no apt run at all. An apt proxy for networks
# that need one comes as the build secret `apt_proxy` (INVOKE_LABDOCK_APT_PROXY), so it is used
# for this run only and never recorded in the image.
set -e
packages=$(cat "$@" 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u)
[ -n "$packages" ] || exit 0
if [ -s /run/secrets/apt_proxy ]; then
    proxy=$(cat /run/secrets/apt_proxy)
    printf 'Acquire::http::Proxy "%s";\nAcquire::https::Proxy "%s";\n' "$proxy" "$proxy" >/run/labdock/apt.conf
    export APT_CONFIG=/run/labdock/apt.conf  # on a tmpfs: gone after this step
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $packages >/dev/null
rm -rf /var/lib/apt/lists/*
