#!/usr/bin/env bash
# tests/render_report.sh: render report.html in headless Chromium, check that
# every plot is in the rendered DOM and non-empty, and keep a screenshot.
#
# Usage: tests/render_report.sh [BUILD_DIR]          (default: $LQ_BUILD_DIR, else ./build)
#        tests/render_report.sh --html FILE.html     (render an existing report; DOM check skipped)
#
# Without --html it runs BUILD_DIR/test_report (Report.EndToEndFromDatabase)
# with LQ_REPORT_OUT set, which writes the synthetic study's report and its
# study.db; then, if BUILD_DIR/longquant exists, also regenerates the report
# through `longquant report` to exercise the CLI path.
#
# Artifacts: $LQ_ARTIFACT_DIR (default BUILD_DIR/report-artifacts): report.png,
# the report files and Chromium's DOM dump.
#
# Chromium is Debian's `chromium` package (or $CHROMIUM). When it is absent the
# script prints SKIP and exits 0: it never installs anything and never needs
# the network (report.html is self-contained).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
html=""
check_dom=1
build="${LQ_BUILD_DIR:-$root/build}"
if [[ "${1:-}" == "--html" ]]; then
  html="$(realpath "$2")"
  check_dom=0
elif [[ -n "${1:-}" ]]; then
  build="$(realpath "$1")"
fi

chrome="${CHROMIUM:-}"
if [[ -z "$chrome" ]]; then
  for c in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then chrome="$(command -v "$c")"; break; fi
  done
fi
if [[ -z "$chrome" ]]; then
  echo "SKIP: render_report: Chromium not found (install Debian's 'chromium' package or set CHROMIUM=/path)." >&2
  echo "SKIP: report.html was not rendered; its structure is still checked by test_report." >&2
  exit 0
fi

art="${LQ_ARTIFACT_DIR:-$build/report-artifacts}"
mkdir -p "$art"
expected="$root/tests/data/report/expected_plots.txt"

if [[ -z "$html" ]]; then
  [[ -x "$build/test_report" ]] || { echo "FAIL: $build/test_report not built (cmake --build $build --target test_report)" >&2; exit 1; }
  LQ_REPORT_OUT="$art" "$build/test_report" --gtest_filter='Report.EndToEndFromDatabase' >"$art/test_report.log" 2>&1 ||
    { cat "$art/test_report.log" >&2; echo "FAIL: test_report failed" >&2; exit 1; }
  if [[ -x "$build/longquant" ]] && "$build/longquant" --help 2>/dev/null | grep -qE '^ +report( |$)'; then
    "$build/longquant" report --db "$art/study.db" --out "$art/cli" --quiet
    cmp -s <(sed 1,3d "$art/report.md") <(sed 1,3d "$art/cli/report.md") ||
      echo "note: the CLI report's tables differ from the test's (database path lines excluded)" >&2
  fi
  html="$art/report.html"
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars "--user-data-dir=$profile")

timeout 120 "$chrome" "${flags[@]}" --window-size=1400,3000 --screenshot="$art/report.png" "file://$html" \
  >"$art/chromium.log" 2>&1 || { cat "$art/chromium.log" >&2; echo "FAIL: chromium screenshot failed" >&2; exit 1; }
timeout 120 "$chrome" "${flags[@]}" --dump-dom "file://$html" >"$art/dom.html" 2>>"$art/chromium.log" ||
  { echo "FAIL: chromium --dump-dom failed" >&2; exit 1; }

python3 - "$art/report.png" "$art/dom.html" "$expected" "$check_dom" <<'EOF'
import re, struct, sys, zlib
png, dom_path, expected_path, check_dom = sys.argv[1:5]
ok = True
# The screenshot decodes and is not blank (many distinct pixel values).
data = open(png, 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'report.png is not a PNG'
pos, idat, w, h = 8, b'', 0, 0
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b'IHDR': w, h = struct.unpack('>II', body[:8])
    if kind == b'IDAT': idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
distinct = len(set(raw[::7]))
print(f'screenshot {w}x{h}, {distinct} distinct byte values')
if distinct < 20:
    print('FAIL: the screenshot looks blank'); ok = False
# Every expected plot is in the rendered DOM with data marks.
dom = open(dom_path, encoding='utf-8').read()
ids = [l.strip() for l in open(expected_path) if l.strip() and not l.startswith('#')]
if check_dom == '1':
    for pid in ids:
        m = re.search(r'<svg[^>]*id="%s"[^>]*>(.*?)</svg>' % re.escape(pid), dom, re.S)
        if not m:
            print(f'FAIL: plot {pid} missing from the rendered DOM'); ok = False; continue
        body = m.group(1)
        marks = len(re.findall(r'<(path|rect|circle|line)\b', body))
        texts = len(re.findall(r'<text\b', body))
        if marks < 5 or texts < 3:
            print(f'FAIL: plot {pid} looks empty ({marks} marks, {texts} labels)'); ok = False
        else:
            print(f'ok: {pid}: {marks} marks, {texts} labels')
sys.exit(0 if ok else 1)
EOF
echo "PASS: rendered $html; screenshot $art/report.png"
