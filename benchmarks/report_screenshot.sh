#!/usr/bin/env bash
# Render a report.html in headless Chromium and save a screenshot beside it.
# Usage: benchmarks/report_screenshot.sh RUN_OR_SWEEP_DIR   (needs: apt-get install chromium)
set -euo pipefail
dir=$(cd "$1" && pwd)
test -f "$dir/report.html" || { echo "no report.html in $dir; run: ttft-profile report $1" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
test -n "$browser" || { echo "no Chromium found; install it (Debian: apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1200,2400 \
    --screenshot="$dir/report.png" "file://$dir/report.html" 2>/dev/null
rm -rf "$profile"
ls -l "$dir/report.png"
