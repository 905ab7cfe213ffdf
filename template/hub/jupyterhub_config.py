"""JupyterHub for this project's team, on one Docker host (hub/compose.yaml runs it).

Every user gets their own container of the project's singleuser image (DockerSpawner), on the
hub's network, with their home on a named volume of their own, the CPU/memory limits and GPUs of
the settings, and the idle culler stopping servers nobody uses. All settings come from the
LABDOCK_HUB_* variables that hub/compose.yaml passes in (labdock/hub.py computes them).
"""

# `c`, the configuration object, is provided by JupyterHub when it reads this file.
# ruff: noqa: F821
from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import sys

from dockerspawner import DockerSpawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


def setting(name: str, default: str = "") -> str:
    return os.environ.get(f"LABDOCK_HUB_{name}", "").strip() or default


def refuse(message: str) -> None:
    """Stop the hub before it serves anything, with one line naming the cause and the fix."""
    sys.exit(f"labdock hub: {message}")


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


PREFIX = setting("PREFIX")
IMAGE = setting("IMAGE")
NETWORK = setting("NETWORK")
BIND = setting("BIND", "127.0.0.1")  # where compose publishes the hub: checked for the test login
AUTH = setting("AUTH", "native")
ADMINS = {name.strip() for name in setting("ADMINS").split(",") if name.strip()}
HOME = "/home/jovyan"  # the singleuser image's user
DATA = "/srv/jupyterhub/data"  # the hub's own volume
# The image's starter notebooks go into a new user's home once (labdock/hub.py: SEED_NOTEBOOKS).
SEED_NOTEBOOKS = 'test -e "$HOME/notebooks" || cp -r /workspace/notebooks "$HOME/notebooks"'

for name, value in (("PREFIX", PREFIX), ("IMAGE", IMAGE), ("NETWORK", NETWORK)):
    if not value:
        refuse(f"LABDOCK_HUB_{name} is not set: start the hub with hub/compose.yaml and its variables.")

# ------------------------------------------------------------------ the hub and its proxy
c.JupyterHub.bind_url = "http://0.0.0.0:8000"  # published by compose on LABDOCK_HUB_BIND only
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://hub:8081"  # the hub's service name on the network
c.JupyterHub.db_url = f"sqlite:///{DATA}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{DATA}/jupyterhub_cookie_secret"

# ------------------------------------------------------------------ authentication
if AUTH == "native":
    # Users sign up at /hub/signup; an admin (LABDOCK_HUB_ADMINS, who signs up first) approves
    # them at /hub/authorize. Passwords are bcrypt hashes in the hub's volume.
    c.JupyterHub.authenticator_class = "native"
    # NativeAuthenticator 1.3.0 times each login with the statsd client JupyterHub 6 removed:
    # give its login page a stand-in that measures nothing (the e2e test logs in through it).
    from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler

    class NoTimer:
        def timer(self, name: str) -> NoTimer:
            return self

        def start(self) -> NoTimer:
            return self

        def stop(self, send: bool = True) -> None:
            pass

    if not hasattr(NativeLoginHandler, "statsd"):
        NativeLoginHandler.statsd = NoTimer()
    c.NativeAuthenticator.minimum_password_length = 10
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 300
    # NativeAuthenticator decides who is approved; JupyterHub's own allow list would block them.
    c.Authenticator.allow_all = True
elif AUTH == "shared-password":
    # Any user name with one password: for tests on this machine only, never for a team.
    if not is_loopback(BIND):
        refuse(
            f"the shared-password authenticator is for tests and serves loopback only, but the hub "
            f"is published on {BIND}: set LABDOCK_HUB_BIND=127.0.0.1, or LABDOCK_HUB_AUTH=native."
        )
    password = setting("SHARED_PASSWORD")
    if len(password) < 8:
        refuse("LABDOCK_HUB_SHARED_PASSWORD must hold at least 8 characters for the shared-password login.")
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = password
    c.Authenticator.allow_all = True
else:
    refuse(f"LABDOCK_HUB_AUTH must be native or shared-password (got '{AUTH}').")
c.Authenticator.admin_users = ADMINS


# ------------------------------------------------------------------ one container per user
class LabdockSpawner(DockerSpawner):
    """DockerSpawner that returns once the user's server answers.

    The hub waits for a new server with exponential backoff and jitter, which added up to several
    seconds to a 2 s start; polling every 0.1 s here lets the hub's own check pass at once.
    """

    poll_interval_seconds = 0.1

    async def start(self):
        ip, port = await super().start()
        url = f"http://{ip}:{port}{self.server.base_url}api"
        client = AsyncHTTPClient()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        attempt = 0
        while loop.time() < deadline:
            try:
                response = await client.fetch(HTTPRequest(url, request_timeout=2), raise_error=False)
                if response.code < 500:
                    break
            except (OSError, HTTPClientError):  # not listening yet, or timed out (599)
                pass
            attempt += 1
            if attempt % 10 == 0 and await self.poll() is not None:
                break  # the container exited: the hub reports it
            await asyncio.sleep(self.poll_interval_seconds)
        return ip, port


c.JupyterHub.spawner_class = LabdockSpawner
c.DockerSpawner.image = IMAGE
c.DockerSpawner.pull_policy = "ifnotpresent"  # a pushed image is pulled once, a local one used
c.DockerSpawner.network_name = NETWORK
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True  # containers go when they stop; the user's volume stays
c.DockerSpawner.name_template = f"{PREFIX}-user-{{username}}"
c.DockerSpawner.volumes = {f"{PREFIX}-user-{{username}}": HOME}
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.DockerSpawner.post_start_cmd = shlex.join(["sh", "-c", SEED_NOTEBOOKS])
c.DockerSpawner.extra_create_kwargs = {"labels": {"dev.labdock.hub": PREFIX}}
host_config: dict = {"init": True, "security_opt": ["no-new-privileges:true"]}
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 180

cpus, memory, gpus = setting("CPUS"), setting("MEMORY"), setting("GPUS", "none")
if cpus:
    c.DockerSpawner.cpu_limit = float(cpus)
if memory:
    c.DockerSpawner.mem_limit = memory
if gpus != "none":
    request = {"driver": "nvidia", "capabilities": [["gpu"]]}
    if gpus == "all":
        request["count"] = -1
    else:
        request["device_ids"] = gpus.split(",")
    host_config["device_requests"] = [request]
    c.DockerSpawner.environment = {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
c.DockerSpawner.extra_host_config = host_config

# ------------------------------------------------------------------ the idle culler
cull = [f"--timeout={int(setting('CULL_TIMEOUT', '3600'))}"]
if setting("CULL_EVERY"):
    cull.append(f"--cull-every={int(setting('CULL_EVERY'))}")
c.JupyterHub.services = [
    {"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler", *cull]}
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
