#!/usr/bin/env bash
# html_report_chromium.sh DEMO SCREENSHOT_SCRIPT OUTDIR — renders the synthetic model to HTML
# (report_render_demo), shoots it in headless Chromium and checks the PNG is not trivial and
# the page had no JavaScript errors. Exit 77 (skip) without chromium.
set -euo pipefail
demo=$1 shot=$2 out=$3
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "SKIP: chromium not installed (apt-get install chromium)"
  exit 77
fi
mkdir -p "$out"
"$demo" "$out/report.html" "$out/snapshot.pickle"
rc=0
"$shot" "$out/report.html" "$out/report.png" || rc=$?
[ $rc -eq 0 ] || { echo "FAIL: html-screenshot.sh exited $rc"; exit 1; }
size=$(stat -c %s "$out/report.png")
if [ "$size" -le 10240 ]; then
  echo "FAIL: $out/report.png is only $size bytes"
  exit 1
fi
echo "OK: $out/report.png ($size bytes)"
