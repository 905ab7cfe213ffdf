"""Tasks of this project: `invoke --list` shows them, `invoke --help TASK` explains one.

labdock's tasks (build, up, down, lock, add, run-notebook, push, ...) live in the labdock/
package, which the template keeps current with `copier update`. This file is yours: the update
never touches it. Add your own tasks below; their settings can go in invoke.yaml too.
"""

from invoke import Context, task  # noqa: F401 (for your tasks below)

from labdock import namespace

ns = namespace()


# Your own tasks. An example, which runs a command in the running JupyterLab container:
#
# from labdock.container import exec_
#
# @task(help={"epochs": "How many epochs to train"})
# def train(c: Context, epochs: int = 10) -> None:
#     """Train the model in the JupyterLab container."""
#     exec_(c, f"python -m your_package.train --epochs {epochs}")
#
# ns.add_task(train)
#
# Wrapping one of labdock's tasks, e.g. to run your checks before every push:
#
# from labdock.release import push
#
# @task(help=push.help)
# def release(c: Context, tag: str = "") -> None:
#     """Run the tests in the container, then push the image."""
#     exec_(c, "pytest -q")
#     push(c, tag=tag)
#
# ns.add_task(release)
