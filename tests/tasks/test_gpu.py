"""Unit tests of template/labdock/gpu.py: the GPU selection, its compose override, and the check
of the driver against the CUDA version torch was built for, with recorded `nvidia-smi` outputs.

No GPU is available where these run: the outputs below are what nvidia-smi prints on real
machines (driver branches 470, 535, 550, 580; the pre-545 and the wider newer table layout).
"""

from __future__ import annotations

import pytest
import yaml

from tests.standalone import load

gpu = load("gpu")

SMI_550_A100 = """\
Tue Mar 12 10:21:33 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-40GB          On  |   00000000:07:00.0 Off |                    0 |
| N/A   31C    P0             58W /  400W |       4MiB /  40960MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""

SMI_470_T4 = """\
Wed Jun  7 09:12:44 2023
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.182.03   Driver Version: 470.182.03   CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. |
|                               |                      |               MIG M. |
|===============================+======================+======================|
|   0  Tesla T4            Off  | 00000000:00:04.0 Off |                    0 |
| N/A   36C    P8     9W /  70W |      0MiB / 15109MiB |      0%      Default |
|                               |                      |                  N/A |
+-------------------------------+----------------------+----------------------+
|   1  Tesla T4            Off  | 00000000:00:05.0 Off |                    0 |
| N/A   35C    P8    10W /  70W |      0MiB / 15109MiB |      0%      Default |
|                               |                      |                  N/A |
+-------------------------------+----------------------+----------------------+
"""

SMI_580_4090 = """\
Mon Sep 29 14:02:11 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.82.07              Driver Version: 580.82.07      CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0  On |                  Off |
|  0%   41C    P8             19W /  450W |     612MiB /  24564MiB |      2%      Default |
|                                         |                        |                  N/A |
+-----------------------------------------+------------------------+----------------------+
"""

# In a container given only the `utility` capability, libcuda is not mounted: no CUDA version.
SMI_535_NO_CUDA = """\
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: N/A      |
|-----------------------------------------+----------------------+----------------------+
|   0  NVIDIA H100 80GB HBM3          On  | 00000000:18:00.0 Off |                    0 |
+-----------------------------------------+----------------------+----------------------+
"""

SMI_NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
    "the latest NVIDIA driver is installed and running.\n"
)

SMI_LIST = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-4a6c1e2b-8f3d-7a91-2c5e-0b9d8e7f6a51)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9e2f3d4c-5b6a-7980-1a2b-3c4d5e6f7a8b)
  MIG 3g.20gb     Device  0: (UUID: MIG-2f8e1c3a-6b7d-5e4f-9a0b-1c2d3e4f5a6b)
"""

TORCH_CU128 = """\
from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'xpu']
__version__ = '2.9.1+cu128'
debug = False
cuda: Optional[str] = '12.8'
git_version = 'd38164a545b4a4e4e0cf73ce67173f70574890b6'
hip: Optional[str] = None
xpu: Optional[str] = None
"""
TORCH_CPU = TORCH_CU128.replace("+cu128", "+cpu").replace(
    "cuda: Optional[str] = '12.8'", "cuda: Optional[str] = None"
)


# ----------------------------------------------------------------------------- selection


@pytest.mark.parametrize(
    ("setting_gpu", "gpus", "flag", "expected"),
    [
        ("nvidia", "all", None, "all"),
        ("nvidia", "0,1", None, "0,1"),
        ("nvidia", " 0, 1 ", None, "0,1"),
        (
            "nvidia",
            "GPU-4a6c1e2b-8f3d-7a91-2c5e-0b9d8e7f6a51",
            None,
            "GPU-4a6c1e2b-8f3d-7a91-2c5e-0b9d8e7f6a51",
        ),
        ("nvidia", "none", None, "none"),
        ("nvidia", "0,1", False, "none"),  # --no-gpu
        ("none", "all", None, "none"),
        ("none", "1", True, "1"),  # --gpu on a project set to gpu: none
        ("nvidia", "", None, "all"),
    ],
)
def test_selection(setting_gpu, gpus, flag, expected):
    assert gpu.selection(setting_gpu, gpus, flag) == expected


@pytest.mark.parametrize(
    ("gpus", "message"), [("0;1", "'0;1'"), ("first", "'first'"), ("0,0", "GPU 0 twice")]
)
def test_a_wrong_selection_is_named_with_the_fix(gpus, message):
    with pytest.raises(ValueError, match=message):
        gpu.selection("nvidia", gpus)


def reservation(chosen: str) -> dict:
    return yaml.safe_load(gpu.override_yaml(chosen))["services"]["lab"]


def test_all_reserves_every_gpu_with_count():
    lab = reservation("all")
    assert lab["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    ]
    assert "NVIDIA_VISIBLE_DEVICES" not in lab["environment"]  # the reservation decides


def test_ids_reserve_exactly_those_without_count():
    devices = reservation("0,1")["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}]


def test_none_is_a_valid_override_that_requests_nothing():
    assert yaml.safe_load(gpu.override_yaml("none")) == {"services": {"lab": {}}}


def test_device_ids():
    assert gpu.device_ids("all") is None and gpu.device_ids("none") is None
    assert gpu.device_ids("0,GPU-ab12") == ["0", "GPU-ab12"]


# ----------------------------------------------------------------------------- nvidia-smi


@pytest.mark.parametrize(
    ("output", "driver", "cuda"),
    [
        (SMI_550_A100, "550.54.15", "12.4"),
        (SMI_470_T4, "470.182.03", "11.4"),
        (SMI_580_4090, "580.82.07", "13.0"),
        (SMI_535_NO_CUDA, "535.104.05", None),
    ],
)
def test_nvidia_smi_header(output, driver, cuda):
    assert gpu.parse_nvidia_smi(output) == gpu.Driver(driver, cuda)


def test_nvidia_smi_without_a_driver_names_the_fix():
    with pytest.raises(ValueError, match=r"NVIDIA-SMI has failed.*install the NVIDIA driver and the NVIDIA"):
        gpu.parse_nvidia_smi(SMI_NO_DRIVER)
    with pytest.raises(ValueError, match="no output"):
        gpu.parse_nvidia_smi("")


def test_gpu_list_counts_gpus_not_mig_devices():
    assert gpu.parse_gpu_list(SMI_LIST) == [
        "GPU-4a6c1e2b-8f3d-7a91-2c5e-0b9d8e7f6a51",
        "GPU-9e2f3d4c-5b6a-7980-1a2b-3c4d5e6f7a8b",
    ]


def test_torch_version_file():
    assert gpu.parse_torch_version_file(TORCH_CU128) == (True, "12.8")
    assert gpu.parse_torch_version_file(TORCH_CPU) == (True, None)
    assert gpu.parse_torch_version_file("") == (False, None)  # no torch in the image


def test_the_probe_reads_torch_version_without_importing_torch(tmp_path, monkeypatch):
    import subprocess
    import sys

    package = tmp_path / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("raise SystemExit('imported torch')\n")
    (package / "version.py").write_text(TORCH_CU128)
    result = subprocess.run(
        [sys.executable, "-c", gpu.TORCH_VERSION_PROBE],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path)},
        check=True,
    )
    assert gpu.parse_torch_version_file(result.stdout) == (True, "12.8")


# ----------------------------------------------------------------------------- the verdict


def verdict(smi: str, torch_version_file: str):
    return gpu.check_driver(gpu.parse_nvidia_smi(smi), gpu.parse_torch_version_file(torch_version_file)[1])


def test_a_driver_as_new_as_torchs_cuda_is_ok():
    assert verdict(SMI_550_A100, TORCH_CU128.replace("12.8", "12.4")).level == "ok"
    assert verdict(SMI_580_4090, TORCH_CU128).level == "ok"  # a newer major runs older builds


def test_an_older_minor_runs_through_minor_version_compatibility_with_a_warning():
    result = verdict(SMI_550_A100, TORCH_CU128)
    assert result.level == "warn"
    assert "570.26 or newer" in result.message  # NVIDIA's minimum for CUDA 12.8
    assert "download.pytorch.org/whl/cu124" in result.message  # or a torch the driver runs in full


def test_an_older_major_fails_and_names_the_driver_to_install():
    result = verdict(SMI_470_T4, TORCH_CU128)
    assert result.level == "fail"
    assert result.message.startswith(
        "driver 470.182.03 supports CUDA 11.4, too old for torch built for CUDA 12.8"
    )
    assert "upgrade the NVIDIA driver to 570.26 or newer" in result.message
    assert "cu1" not in result.message  # PyTorch publishes no build this driver runs


def test_torch_for_cuda_13_on_a_cuda_12_driver():
    result = verdict(SMI_550_A100, TORCH_CU128.replace("12.8", "13.0"))
    assert result.level == "fail" and "580.65.06 or newer" in result.message and "whl/cu124" in result.message


def test_a_missing_cuda_version_is_read_from_the_driver_table():
    assert gpu.supported_cuda("535.104.05") == "12.2"
    assert gpu.supported_cuda("440.33") is None
    assert verdict(SMI_535_NO_CUDA, TORCH_CU128.replace("12.8", "12.2")).level == "ok"


def test_a_cpu_build_of_torch_names_the_fix():
    result = verdict(SMI_550_A100, TORCH_CPU)
    assert result.level == "fail"
    assert "copier update --defaults --data gpu=nvidia" in result.message and "invoke lock" in result.message


def test_the_driver_table_grows_with_cuda():
    ordered = sorted(gpu.MIN_DRIVER.items())
    drivers = [gpu.version(minimum) for _, minimum in ordered]
    assert drivers == sorted(drivers)
