#!/usr/bin/env bash
# The GPU path of a labdock project, checked on a real machine with NVIDIA GPUs (CI has none).
#
#   scripts/gpu-check.sh [PROJECT]
#
# PROJECT is a project rendered with stack=pytorch and gpu=nvidia; without it, one is rendered
# from this checkout into a temporary folder, then locked and built with `invoke build` (needs
# copier and invoke on PATH, and a while: the CUDA wheels are large). For gpus=all, each GPU
# alone, and 0,1 when there are two or more, it writes the GPU override with
# template/labdock/gpu.py (as the tasks write compose.gpu.yaml) and checks in a container of the image that
#   - `nvidia-smi -L` lists exactly the GPUs asked for (same UUIDs as on the host),
#   - torch.cuda.device_count() equals their number,
# then runs the driver check of `invoke doctor` (gpu.check_driver) against the image's torch.
# Exits non-zero on the first failed check, with what failed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
labdock="$repo/template/labdock"
fail() { echo "gpu-check: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null \
  || fail "no nvidia-smi on this machine: run this where an NVIDIA GPU, its driver and the NVIDIA Container Toolkit are installed."
docker info --format '{{json .Runtimes}}' | grep -q nvidia \
  || fail "the Docker engine has no nvidia runtime: install the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker) and restart Docker."

mapfile -t host_gpus < <(nvidia-smi -L | python3 -c "
import sys; sys.path.insert(0, '$labdock'); import gpu
print('\n'.join(gpu.parse_gpu_list(sys.stdin.read())))")
[ "${#host_gpus[@]}" -gt 0 ] || fail "nvidia-smi -L lists no GPU."
echo "host: ${#host_gpus[@]} GPU(s): ${host_gpus[*]}"

project=${1:-}
if [ -z "$project" ]; then
  project=$(mktemp -d)/gpu-check
  copier copy --trust --defaults --vcs-ref=HEAD --data project_name="GPU Check" \
    --data stack=pytorch --data gpu=nvidia "$repo" "$project"
  (cd "$project" && invoke build)
fi
cd "$project"
# The checkout's name on the engine, fixed by its first task (labdock/project.py).
name=$(python3 -c "import json; print(json.load(open('.labdock/checkout.json'))['name'])") \
  || fail "no .labdock/checkout.json in $project: run \`invoke build\` there first."
image="$name:latest"
docker image inspect "$image" >/dev/null 2>&1 || fail "no image $image: run \`invoke build\` in $project first."
export LABDOCK_TOKEN=gpu-check LABDOCK_PROJECT="$name" LABDOCK_IMAGE=$image
override=$(mktemp --suffix=.yaml)  # the project's own compose.gpu.yaml is left alone
trap 'rm -f "$override"' EXIT

in_container() {  # in_container SELECTION COMMAND...: run in a fresh container with those GPUs
  python3 -c "import sys; sys.path.insert(0, '$labdock'); import gpu
print(gpu.override_yaml(gpu.selection('nvidia', sys.argv[1])), end='')" "$1" >"$override"
  shift
  docker compose -f compose.yaml -f "$override" run --rm --no-deps -T lab "$@"
}

selections=(all)
for index in "${!host_gpus[@]}"; do selections+=("$index"); done
[ "${#host_gpus[@]}" -ge 2 ] && selections+=("0,1")

for selection in "${selections[@]}"; do
  if [ "$selection" = all ]; then
    expected=("${host_gpus[@]}")
  else
    expected=()
    IFS=, read -ra indexes <<<"$selection"
    for index in "${indexes[@]}"; do expected+=("${host_gpus[$index]}"); done
  fi
  seen=$(in_container "$selection" nvidia-smi -L | python3 -c "
import sys; sys.path.insert(0, '$labdock'); import gpu
print(' '.join(gpu.parse_gpu_list(sys.stdin.read())))")
  [ "$seen" = "${expected[*]}" ] || fail "gpus: $selection: the container sees [$seen], expected [${expected[*]}]."
  count=$(in_container "$selection" python -c "import torch; print(torch.cuda.device_count())" | tail -1)
  [ "$count" = "${#expected[@]}" ] || fail "gpus: $selection: torch.cuda.device_count() is $count, expected ${#expected[@]}."
  echo "ok: gpus: $selection -> ${#expected[@]} GPU(s), nvidia-smi and torch agree"
done

smi=$(in_container all nvidia-smi)
torch_version=$(in_container all python -c "$(python3 -c "import sys; sys.path.insert(0, '$labdock'); import gpu; print(gpu.TORCH_VERSION_PROBE)")")
SMI="$smi" TORCH="$torch_version" python3 -c "
import os, sys; sys.path.insert(0, '$labdock'); import gpu
verdict = gpu.check_driver(gpu.parse_nvidia_smi(os.environ['SMI']), gpu.parse_torch_version_file(os.environ['TORCH'])[1])
print(f'{verdict.level}: {verdict.message}')
sys.exit(verdict.level == 'fail')" || fail "the driver cannot run the image's torch (above)."
echo "gpu-check: all checks passed"
