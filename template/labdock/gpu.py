"""NVIDIA GPUs: which ones the container gets, and whether the driver can run the image's torch.

Compose cannot turn one variable into a list (device_ids), so the GPU request is a small
override file that the tasks write next to .env from the gpu and gpus settings (override_yaml):
`gpus: all` reserves every GPU (count: all), `gpus: 0,1` exactly those (device_ids, no count),
`gpu: none` or `--no-gpu` none (the file is then a no-op, so the devcontainer, which always
lists it, starts on machines without a GPU). The NVIDIA runtime sets NVIDIA_VISIBLE_DEVICES
from the reservation itself: setting it too would contradict the reservation.

Plain functions only: no Invoke, no subprocess, no other labdock module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL = "all"
NONE = "none"
# A GPU index, a GPU UUID, or a MIG device UUID, as nvidia-smi -L prints them.
DEVICE = re.compile(r"[0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+")
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def selection(gpu: str, gpus: str, flag: bool | None = None) -> str:
    """The GPUs to request: "none", "all", or device ids joined by commas ("0,1").

    gpu: the project's gpu setting (none | nvidia); gpus: which ones (all, or ids, or none);
    flag: --gpu (True) / --no-gpu (False) for this run, None when neither is given."""
    wanted = flag if flag is not None else gpu == "nvidia"
    text = str(gpus).replace(" ", "").strip() or ALL
    if not wanted or text == NONE:
        return NONE
    if text == ALL:
        return ALL
    ids = text.split(",")
    bad = [device for device in ids if not DEVICE.fullmatch(device)]
    if bad:
        raise ValueError(
            f"labdock.gpus has {bad[0]!r}: use all, none, or GPU indexes or UUIDs separated by "
            "commas, such as 0,1 (nvidia-smi -L lists them)."
        )
    repeated = sorted({device for device in ids if ids.count(device) > 1})
    if repeated:
        raise ValueError(f"labdock.gpus lists GPU {repeated[0]} twice: give each GPU once.")
    return ",".join(ids)


def device_ids(chosen: str) -> list[str] | None:
    """The device_ids of a selection; None for all (count: all) and for none."""
    return None if chosen in (ALL, NONE) else chosen.split(",")


def override_yaml(chosen: str, service: str = "lab") -> str:
    """compose.gpu.yaml for a selection from selection(): the GPU request of one service."""
    if not NAME.fullmatch(service):
        raise ValueError(f"{service!r} is not a valid compose service name.")
    header = [
        f"# GPUs: {chosen}. Written by invoke from labdock.gpu / labdock.gpus (and --gpu/--no-gpu):",
        "# do not edit, change the settings. Needs the NVIDIA Container Toolkit on the engine's host.",
    ]
    if chosen == NONE:
        return "\n".join([*header, "services:", f"  {service}: {{}}", ""])
    ids = device_ids(chosen)
    which = (
        ["              count: all"]
        if ids is None
        else ["              device_ids: [" + ", ".join(f'"{device}"' for device in ids) + "]"]
    )
    return "\n".join(
        [
            *header,
            "services:",
            f"  {service}:",
            "    environment:",
            "      # compute for CUDA, utility for nvidia-smi",
            "      NVIDIA_DRIVER_CAPABILITIES: compute,utility",
            "    deploy:",
            "      resources:",
            "        reservations:",
            "          devices:",
            "            - driver: nvidia",
            *which,
            "              capabilities: [gpu]",
            "",
        ]
    )


# ----------------------------------------------------------------------------- the driver check

# The oldest Linux x86_64 driver of each CUDA toolkit release (its GA): NVIDIA's CUDA Toolkit
# Release Notes, Table 3 "CUDA Toolkit and Corresponding Driver Versions",
# https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html#id5
MIN_DRIVER = {
    (11, 0): "450.51.05",
    (11, 1): "455.23",
    (11, 2): "460.27.03",
    (11, 3): "465.19.01",
    (11, 4): "470.42.01",
    (11, 5): "495.29.05",
    (11, 6): "510.39.01",
    (11, 7): "515.43.04",
    (11, 8): "520.61.05",
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 3): "545.23.06",
    (12, 4): "550.54.14",
    (12, 5): "555.42.02",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
}
# The oldest driver that runs any release of a CUDA major through minor version compatibility
# (same release notes, Table 2): an older driver than MIN_DRIVER still runs most code.
MIN_DRIVER_FOR_MAJOR = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
# CUDA variants PyTorch publishes wheels for (download.pytorch.org/whl/cuXYZ), for the hint.
PYTORCH_CUDA_BUILDS = ((11, 8), (12, 1), (12, 4), (12, 6), (12, 8), (12, 9), (13, 0))


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Driver:
    version: str  # e.g. 550.54.15
    cuda: str | None  # the newest CUDA it supports, e.g. 12.4 (None when nvidia-smi says N/A)


def parse_nvidia_smi(output: str) -> Driver:
    """The driver and its CUDA version from `nvidia-smi`'s header."""
    found = re.search(r"Driver Version:\s*([0-9]+(?:\.[0-9]+)+)", output)
    if not found:
        first = output.strip().splitlines()[0] if output.strip() else "no output"
        raise ValueError(
            f"nvidia-smi gave no driver version ({first}): install the NVIDIA driver and the NVIDIA "
            "Container Toolkit on the engine's host, then restart Docker."
        )
    cuda = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", output)
    return Driver(found.group(1), cuda.group(1) if cuda else None)


def parse_gpu_list(output: str) -> list[str]:
    """The GPU UUIDs from `nvidia-smi -L` (one line per GPU; MIG devices are indented below)."""
    return re.findall(r"^GPU [0-9]+: .*\(UUID: (GPU-[0-9a-fA-F-]+)\)", output, flags=re.MULTILINE)


# Printed by the container's Python: torch/version.py, read without importing torch (seconds).
TORCH_VERSION_PROBE = (
    "import importlib.util, pathlib; spec = importlib.util.find_spec('torch'); "
    "print(pathlib.Path(spec.submodule_search_locations[0], 'version.py').read_text() if spec else '')"
)


def parse_torch_version_file(text: str) -> tuple[bool, str | None]:
    """(torch is installed, the CUDA version it was built for or None for a CPU build), from
    TORCH_VERSION_PROBE's output (torch/version.py: `cuda: Optional[str] = '12.8'`)."""
    if not text.strip():
        return False, None
    found = re.search(r"^cuda\s*(?::[^=]*)?=\s*(?:'([0-9.]+)'|\"([0-9.]+)\"|None)", text, re.MULTILINE)
    if not found:
        return True, None
    return True, found.group(1) or found.group(2)


def supported_cuda(driver_version: str) -> str | None:
    """The newest CUDA release the driver runs in full, from the table (when nvidia-smi says N/A)."""
    fits = [cuda for cuda, minimum in MIN_DRIVER.items() if version(minimum) <= version(driver_version)]
    return "{}.{}".format(*max(fits)) if fits else None


@dataclass(frozen=True)
class Verdict:
    level: str  # ok | warn | fail
    message: str


def check_driver(driver: Driver, torch_cuda: str | None) -> Verdict:
    """Can this driver run the image's torch (built for torch_cuda; None: a CPU build)?"""
    if torch_cuda is None:
        return Verdict(
            "fail",
            "torch in the image is a CPU build: GPU projects take PyPI's CUDA wheels; set gpu: nvidia "
            "(`copier update --defaults --data gpu=nvidia`), then `invoke lock` and `invoke build`.",
        )
    have = driver.cuda or supported_cuda(driver.version)
    wanted = version(torch_cuda)[:2]
    if have and version(have)[:2] >= wanted:
        return Verdict("ok", f"driver {driver.version} (CUDA {have}) runs torch built for CUDA {torch_cuda}")
    needed = MIN_DRIVER.get(wanted)
    older = [build for build in PYTORCH_CUDA_BUILDS if have and build <= version(have)[:2]]
    alternative = (
        " or use a torch build for CUDA {0}.{1} (PyTorch's index download.pytorch.org/whl/cu{0}{1})".format(
            *max(older)
        )
        if older
        else ""
    )
    upgrade = f"upgrade the NVIDIA driver to {needed} or newer" if needed else "upgrade the NVIDIA driver"
    compatible = MIN_DRIVER_FOR_MAJOR.get(wanted[0])
    if (
        have
        and version(have)[0] == wanted[0]
        and compatible
        and version(driver.version) >= version(compatible)
    ):
        return Verdict(
            "warn",
            f"driver {driver.version} supports CUDA {have}, torch was built for CUDA {torch_cuda}: it runs "
            "through CUDA minor version compatibility, but kernels that need the newer driver fail; "
            f"{upgrade}{alternative}.",
        )
    return Verdict(
        "fail",
        f"driver {driver.version} supports CUDA {have or 'unknown'}, too old for torch built for CUDA "
        f"{torch_cuda}: {upgrade}{alternative}.",
    )
