#!/usr/bin/env bash
# Download, on this (CPU) machine, the wheels that bench/gpu/run_train_step.sh installs on a GPU machine whose
# image has Python 3.12, torch, transformers, accelerate, pyarrow and pandas but no package index (see
# /work/.library/device/KINDS.md): exactly the packages the bench imports that the image lacks (traced with the
# tiny run), at the versions the project is tested with here. They land in bench/gpu/wheels/ (gitignored) and
# travel with `carry: ["bench/gpu/wheels", "demo"]`, which must stay under the device's 64 MiB with the tree.
#
# Sizes (2026-12): av 35.8 MB, decord 13.6 MB, pydantic-core 2.3 MB, trl 0.9 MB, the rest < 0.7 MB each: ~54 MB.
# apache-beam (19.6 MB) would take the carry over 64 MiB beside PyAV, and the bench imports no Beam module, so it is
# only fetched with WITH_BEAM=1 (for a call that carries it in place of another wheel). imageio-ffmpeg (the ffmpeg
# binary, ~30 MB) is optional in the project (`mtvr_data.ffmpeg_bin`) and left out.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
pkgs=(
    trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    av==18.1.0 decord==0.6.0
)
if [[ "${WITH_BEAM:-0}" == 1 ]]; then pkgs+=(apache-beam==2.78.0); fi
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux2010_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d wheels "${pkgs[@]}"
du -ch wheels/*.whl | tail -1
