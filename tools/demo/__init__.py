"""The demo stack: `python -m tools.demo [up|down] [--local]` (what `bash tools/demo.sh` runs).

By default the CPU demo fleet runs in Docker (images built here, offline when no registry
answers); `--local` runs the same path as host processes instead.
"""
