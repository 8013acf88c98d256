#!/usr/bin/env bash
# html-screenshot.sh REPORT.html OUT.png — renders an HTML report in headless Chromium (Debian's
# `chromium` package), writes a screenshot and fails if the page had JavaScript errors.
#
#   exit 0   screenshot written, no errors
#   exit 1   JavaScript errors (printed), or no screenshot
#   exit 2   usage
#   exit 77  chromium is not installed (ctest SKIP_RETURN_CODE)
#
# How errors are detected (two runs: --screenshot and --dump-dom cannot be combined):
#   1. `--enable-logging=stderr --v=0` makes Chromium print every console message of the page as
#      `...:INFO:CONSOLE:LINE] "TEXT", source: URL (LINE)`, whatever its level: console.error and
#      console.log look alike, and an uncaught exception is a message starting with "Uncaught".
#      Spillway's report never writes to the console, so every CONSOLE line whose source is the
#      report file counts as an error (this also catches Content-Security-Policy violations,
#      i.e. anything the page would try to load), as does any "Uncaught" line.
#   2. The report's script ends by setting `data-js="ok"` on <html> (or `data-js="error: ..."`
#      when it throws). `--dump-dom` prints the DOM after the scripts ran; the attribute must be
#      "ok". A page without the attribute (not a Spillway report) skips this check.
# Environment: CHROMIUM (default /usr/bin/chromium), WINDOW (default 1400,2400),
# KEEP_LOGS=1 keeps the Chromium logs next to OUT.png.
set -uo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 REPORT.html OUT.png" >&2
  exit 2
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "SKIP: $chromium not found (apt-get install chromium)" >&2
  exit 77
fi
html=$(realpath "$1") || exit 2
png=$(realpath -m "$2")
[ -f "$html" ] || { echo "$0: $1: no such file" >&2; exit 2; }
url="file://$html"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --disable-dev-shm-usage --hide-scrollbars --window-size="${WINDOW:-1400,2400}")

rm -f "$png"
timeout 120 "$chromium" "${flags[@]}" --user-data-dir="$work/p1" --screenshot="$png" "$url" \
  >"$work/shot.out" 2>"$work/shot.err"
rc=$?
if [ ! -s "$png" ]; then
  echo "$0: no screenshot (chromium exit $rc):" >&2
  tail -20 "$work/shot.err" >&2
  exit 1
fi

timeout 120 "$chromium" "${flags[@]}" --user-data-dir="$work/p2" --enable-logging=stderr --v=0 \
  --dump-dom "$url" >"$work/dom.html" 2>"$work/dom.err"
rc=$?
if [ "${KEEP_LOGS:-0}" = 1 ]; then
  cp "$work/shot.err" "$png.shot.log"
  cp "$work/dom.err" "$png.console.log"
  cp "$work/dom.html" "$png.dom.html"
fi
errors=0
if [ $rc -ne 0 ] || [ ! -s "$work/dom.html" ]; then
  echo "$0: --dump-dom failed (chromium exit $rc)" >&2
  tail -20 "$work/dom.err" >&2
  errors=1
fi
# Console messages of the page itself, and uncaught exceptions from anywhere.
if grep -F ":CONSOLE" "$work/dom.err" | grep -F -e "source: $url" -e '"Uncaught' >"$work/console"; then
  echo "$0: JavaScript console messages from the page:" >&2
  cat "$work/console" >&2
  errors=1
fi
if grep -q 'data-js=' "$work/dom.html"; then
  if ! grep -q '<html[^>]* data-js="ok"' "$work/dom.html"; then
    echo "$0: the page's script did not finish: $(grep -o 'data-js="[^"]*"' "$work/dom.html" | head -1)" >&2
    errors=1
  fi
fi
[ $errors -eq 0 ] || exit 1
echo "$png: $(stat -c %s "$png") bytes, no JavaScript errors"
