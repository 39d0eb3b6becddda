#!/bin/sh
# make check-report — load Cove's HTML run report in headless Chromium and fail when the page is broken.
#
#   scripts/check-report.sh                       render the built-in default image's report with
#                                                 `cove run --report` (release build) and check it
#   REPORT=path/to/report.html scripts/check-report.sh   check an existing page instead
#   SCREENSHOT=out.png ...                        also save a full-width screenshot to look at
#   CHROMIUM=/path/to/chrome ...                  use that browser instead of looking one up
#
# How it checks (no DevTools protocol, no script in the page):
#   * `chromium --headless=new --dump-dom file://…` loads the page and prints the DOM after load; we
#     look there for <svg id="sequence-diagram"> holding at least one arrow (<g class="arrow …">) and
#     <svg id="state-timeline"> holding at least one state segment (<rect class="segment …">), and for
#     the report's Content-Security-Policy (default-src 'none').
#   * `--enable-logging=stderr --v=0` makes Chromium copy every console message to stderr as
#     "INFO:CONSOLE…] "text", source: …". The report has no script and forbids loading anything, so
#     any console message at all is an error: a blocked load (a CSP violation names what the page tried
#     to fetch), an invalid SVG attribute ("Error: <rect> attribute width: …"), a script that should not
#     be there. Chromium logs them all at INFO, so we do not try to tell errors from warnings.
#   * Other stderr noise (D-Bus, GPU, the Debian launcher's /dev/shm test) is ignored.
#
# Chromium: Debian's `chromium` package. When it is missing and we are root with apt-get, we install
# it; otherwise we stop and print the command to run.
set -eu

SWIFT=${SWIFT:-swift}
REPORT=${REPORT:-}
SCREENSHOT=${SCREENSHOT:-}
CHROMIUM=${CHROMIUM:-}

fail() {
  echo "check-report: error: $*" >&2
  exit 1
}

find_browser() {
  if [ -n "$CHROMIUM" ]; then
    command -v "$CHROMIUM" 2>/dev/null
    return
  fi
  for candidate in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

workdir=$(mktemp -d "${TMPDIR:-/tmp}/cove-check-report.XXXXXX")
trap 'rm -rf "$workdir"' EXIT
trap 'exit 130' INT TERM

if ! browser=$(find_browser); then
  if [ -n "$CHROMIUM" ]; then
    fail "CHROMIUM=$CHROMIUM is not an executable"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check-report: headless Chromium is missing: installing Debian's 'chromium' package with apt-get"
    echo "              (apt-get install chromium: the browser and its libraries, a few hundred MB)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$workdir/apt.log" 2>&1 || {
      tail -n 20 "$workdir/apt.log" >&2
      fail "'apt-get install chromium' failed; install it and retry"
    }
    browser=$(find_browser) || fail "chromium was installed but is not on PATH"
  else
    echo "check-report: error: headless Chromium not found (tried chromium, chromium-browser, google-chrome)." >&2
    echo "              Install it: sudo apt-get install chromium   (Fedora: sudo dnf install chromium)" >&2
    echo "              or point CHROMIUM=/path/to/chrome at one." >&2
    exit 1
  fi
fi

if [ -z "$REPORT" ]; then
  echo "check-report: building cove (release)"
  "$SWIFT" build -c release --product cove >"$workdir/build.log" 2>&1 || {
    tail -n 30 "$workdir/build.log" >&2
    fail "swift build -c release --product cove failed"
  }
  bin=$("$SWIFT" build -c release --show-bin-path)
  if ! "$bin/cove" run --help 2>&1 | grep -q -- '--report'; then
    fail "'cove run' has no --report option in this build; check an existing page with REPORT=path/to/report.html make check-report"
  fi
  REPORT="$workdir/report.html"
  echo "check-report: $bin/cove run --report $REPORT"
  if ! "$bin/cove" run --report "$REPORT" >"$workdir/run.log" 2>&1; then
    # The run's verdict is `make run`'s business; a failed run still has to give a sound report.
    echo "check-report: note: 'cove run' exited non-zero (the report says why); checking the report anyway"
  fi
fi

case $REPORT in
  /*) ;;
  *) REPORT="$PWD/$REPORT" ;;
esac
[ -s "$REPORT" ] || fail "no report at $REPORT"

# file:// URL: escape the characters a path may hold that a URL may not.
url="file://$(printf '%s' "$REPORT" | sed -e 's/%/%25/g' -e 's/ /%20/g' -e 's/#/%23/g' -e 's/?/%3F/g')"

chromium_flags="--headless=new --disable-gpu --no-sandbox --no-first-run --disable-dev-shm-usage
  --user-data-dir=$workdir/profile --enable-logging=stderr --v=0"
version=$("$browser" --version 2>/dev/null | grep -i -m1 -E 'chrom' || echo "$browser")
echo "check-report: loading $url in $version"
# shellcheck disable=SC2086 # the flags are words on purpose
if ! timeout 120 "$browser" $chromium_flags --dump-dom "$url" >"$workdir/dom.html" 2>"$workdir/chromium.log"; then
  tail -n 30 "$workdir/chromium.log" >&2
  fail "Chromium did not load the page (exit status above)"
fi

status=0
problem() {
  echo "check-report: FAIL: $*" >&2
  status=1
}

# Console messages: "INFO:CONSOLE:12] …" (Chromium ≥ 120) or "INFO:CONSOLE(12)] …" (older).
if grep -E 'CONSOLE[:(]' "$workdir/chromium.log" >"$workdir/console.log"; then
  problem "$(wc -l <"$workdir/console.log") console message(s) while loading the page:"
  sed 's/^/    /' "$workdir/console.log" >&2
fi

grep -q '</html>' "$workdir/dom.html" || problem "Chromium's DOM dump is empty or cut short"
grep -q "default-src 'none'" "$workdir/dom.html" ||
  problem "the page has no Content-Security-Policy default-src 'none' (so loads it attempts would go unseen)"

count() { grep -o -- "$1" "$workdir/dom.html" | wc -l | tr -d ' '; }
# inside SVG_ID PREFIX: how many tags beginning with PREFIX sit inside <svg id="SVG_ID"> (awk reads the
# DOM one tag at a time: each record is what follows a "<"; the report nests no <svg> in its diagrams).
inside() {
  awk -v RS='<' -v id="id=\"$1\"" -v prefix="$2" '
    /^svg[ >]/ && index($0, id) { within = 1; next }
    /^\/svg>/ { within = 0; next }
    within && index($0, prefix) == 1 { n++ }
    END { print n + 0 }' "$workdir/dom.html"
}
sequence=$(count '<svg[^>]*id="sequence-diagram"')
timeline=$(count '<svg[^>]*id="state-timeline"')
arrows=$(inside sequence-diagram 'g class="arrow ')
messages=$(grep -o 'data-count="[0-9]*"' "$workdir/dom.html" | tr -dc '0-9\n' | awk '{ n += $1 } END { print n + 0 }')
segments=$(inside state-timeline 'rect class="segment ')
rows=$(inside state-timeline 'g class="tdi-row"')

[ "$sequence" = 1 ] || problem "expected one <svg id=\"sequence-diagram\">, found $sequence"
[ "$timeline" = 1 ] || problem "expected one <svg id=\"state-timeline\">, found $timeline"
[ "$arrows" -gt 0 ] || problem "the sequence diagram is empty (no arrows)"
[ "$segments" -gt 0 ] || problem "the state timeline is empty (no state segments)"

if [ -n "$SCREENSHOT" ]; then
  # shellcheck disable=SC2086
  timeout 120 "$browser" $chromium_flags --hide-scrollbars --window-size=1600,2400 \
    --screenshot="$SCREENSHOT" "$url" >/dev/null 2>&1 || problem "the screenshot failed"
  [ -s "$SCREENSHOT" ] && echo "check-report: screenshot in $SCREENSHOT"
fi

echo "check-report: sequence diagram: $arrows arrows for $messages messages;" \
  "state timeline: $segments segments in $rows TDI rows; console messages: $(wc -l <"$workdir/console.log" | tr -d ' ')"
if [ "$status" = 0 ]; then
  echo "check-report: OK ($REPORT)"
else
  echo "check-report: FAILED ($REPORT)" >&2
fi
exit "$status"
