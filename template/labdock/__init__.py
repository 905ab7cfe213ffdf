"""labdock's tasks for this project, one module per concern. The template owns this package:
`copier update` keeps it current, so put your own tasks in tasks.py, not here.

  settings.py      invoke.yaml's run-time settings, loaded and checked in one place
  project.py       the project: its folder, names read from the rendered files, its settings,
                   this checkout's names on the engine (one engine, many checkouts and users)
  commands.py      command lines, progress lines and warnings
  network.py       bind addresses, ports and URLs
  envfile.py       .env: the token and the settings compose reads
  engine.py        the Docker engine and `docker compose` for this project
  stages.py        building the Dockerfile's stages with the package-index settings
  transaction.py   pyproject.toml and poetry.lock change together or not at all (interrupts too)
  locking.py       Poetry in a container: poetry.lock, and what it installs
  live.py          the running server's environment: changes reach it without a restart
  image.py         build: the image
  server.py        up, down, url, prepare, lab: JupyterLab's life
  remote.py        remote engines: the compose override, the ssh tunnel, the sync's rules
  sync.py          sync: this folder and the project's volume on a remote engine
  gpu.py           the GPU request (compose.gpu.yaml) and the driver's CUDA check
  container.py     shell, exec, logs: the running container
  tensorboard.py   tensorboard: TensorBoard over runs/
  dependencies.py  lock, add, remove
  agent.py         `pip install` in the lab, recorded in the lock: the helper `up` starts
  notebooks.py     run-notebook
  release.py       push: versions, tags, the registry (CI publishes with it too)
  update.py        update: the template's new versions
  doctor.py        doctor: is this machine ready?
  hub.py           hub: the team's JupyterHub on this engine (hub/)
  kubernetes.py    helm: Zero to JupyterHub values and the helm command

Tasks never call each other: they share the plain functions of these modules.
"""

from __future__ import annotations

from invoke import Collection

from . import (
    container,
    dependencies,
    doctor,
    guard,
    hub,
    image,
    kubernetes,
    notebooks,
    project,
    release,
    server,
    settings,
    sync,
    tensorboard,
    update,
)


def namespace() -> Collection:
    """Every labdock task, ready for tasks.py to add its own to."""
    # Invoke loads invoke.yaml after this, with a traceback if it does not parse: check it first.
    settings.project_file(project.ROOT)
    settings.take_environment()  # INVOKE_LABDOCK_*: labdock reads them, Invoke must not cast them
    ns = Collection(
        image.build,
        server.up,
        server.down,
        container.logs,
        server.url,
        tensorboard.tensorboard,
        container.shell,
        container.exec_,
        dependencies.lock,
        dependencies.add,
        dependencies.remove,
        notebooks.run_notebook,
        server.lab,
        release.push,
        update.update,
        doctor.doctor,
        server.prepare,
        hub.hub,
        kubernetes.helm,
        sync.sync,
    )
    for name in ns.task_names:
        guard.one_line_errors(ns[name])
    ns.configure({"labdock": settings.DEFAULTS})
    return ns
