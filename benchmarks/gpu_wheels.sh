#!/usr/bin/env bash
# Sourced by gpu.sh and gpu_all.sh: installs omegaconf (plmkit's config library, which the GPU machine's Python
# lacks) from the pure-Python wheels in .gpu_wheels/ when it is missing, or stops with exit status 2 saying how to
# make them: pip wheel --no-deps -w .gpu_wheels omegaconf antlr4-python3-runtime==4.9.3
if ! python3 -c "import omegaconf" 2>/dev/null; then
  if [ -d .gpu_wheels ]; then python3 -m pip install -q --no-deps --no-index .gpu_wheels/*.whl 2>&1 | tail -1
  else echo "$0: omegaconf is missing and there is no .gpu_wheels/ folder to install it from; make it where" \
         "pip reaches PyPI: pip wheel --no-deps -w .gpu_wheels omegaconf antlr4-python3-runtime==4.9.3" >&2; exit 2; fi
fi
