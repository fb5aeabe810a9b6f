#!/usr/bin/env bash
# The notification templates, rendered by amtool for firing, resolved and mixed groups
# (alertmanager/tests/data/*.json, in Alertmanager's template data layout) and compared
# with alertmanager/tests/golden/*.txt; UPDATE_GOLDEN=1 rewrites those. Then, with
# GRAFANA_URL and RUNBOOK_URL set as alertmanager/entrypoint.sh takes them, every link
# in every message must start with a configured base, name a dashboard uid and
# variables that exist, and a runbook section that exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

sections=(crypto_market.email.subject crypto_market.email.text crypto_market.email.html
          crypto_market.slack.title crypto_market.slack.text)

render() { # data-file template-globs...
  local data=$1; shift
  local globs=()
  for g in "$@"; do globs+=(--template.glob="$g"); done
  for s in "${sections[@]}"; do
    printf '==> %s\n' "$s"
    amtool template render "${globs[@]}" --template.data="$data" --template.text="{{ template \"$s\" . }}"
    printf '\n'
  done
}

for data in alertmanager/tests/data/*.json; do
  name=$(basename "$data" .json)
  golden=alertmanager/tests/golden/$name.txt
  render "$data" 'alertmanager/templates/*.tmpl' >"$scratch/$name.txt"
  if [ "${UPDATE_GOLDEN:-}" = 1 ]; then
    cp "$scratch/$name.txt" "$golden"
    echo "updated $golden"
  elif diff -u "$golden" "$scratch/$name.txt"; then
    echo "ok   $name renders as $golden"
  else
    echo "FAIL $name differs from $golden (UPDATE_GOLDEN=1 to accept)"
    fail=1
  fi
done

# Links, with the bases pointed elsewhere the way compose does it.
GRAFANA_URL=https://grafana.example.org/monitoring RUNBOOK_URL=https://wiki.example.org/crypto/runbook.html \
  ALERTMANAGER_TEMPLATES_OUT="$scratch/links" SLACK_WEBHOOK_URL_PATH=/dev/null \
  ALERTMANAGER_CONFIG=alertmanager/alertmanager.yml sh alertmanager/entrypoint.sh --render-only "$scratch/am.yml" 2>/dev/null
grep -qF "$scratch/links/*.tmpl" "$scratch/am.yml" || { echo "FAIL the rendered config does not load the link overrides"; fail=1; }
for data in alertmanager/tests/data/*.json; do
  render "$data" 'alertmanager/templates/*.tmpl' "$scratch/links/*.tmpl"
done >"$scratch/linked.txt"
if python3 - "$scratch/linked.txt" <<'PY'
import json, re, sys, urllib.parse, glob
text = open(sys.argv[1]).read()
grafana, runbook, prometheus = "https://grafana.example.org/monitoring/d/", "https://wiki.example.org/crypto/runbook.html#", "http://localhost:9090/graph?"
dashboards = {}
for f in glob.glob("grafana/dashboards/*.json"):
    d = json.load(open(f))
    dashboards[d["uid"]] = {v["name"] for v in d["templating"]["list"]}
anchors = {"#" + re.sub(r"[^a-z0-9]+", "", l[3:].lower()) for l in open("docs/runbook.md") if l.startswith("## ")}
links = re.findall(r'https?://[^\s<>"|]+', text)
bad = []
for link in links:
    link = link.replace("&amp;", "&")
    if link.startswith(grafana):
        uid, _, rest = link[len(grafana):].partition("/")
        query = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)
        if uid not in dashboards:
            bad.append(f"{link}: no dashboard {uid}")
        for var in query:
            if not var.startswith("var-") or var[4:] not in dashboards.get(uid, ()):
                bad.append(f"{link}: {uid} has no variable {var}")
    elif link.startswith(runbook):
        if "#" + link[len(runbook):] not in anchors:
            bad.append(f"{link}: no such section in docs/runbook.md")
    elif not link.startswith(prometheus):
        bad.append(f"{link}: not under a configured base")
for b in bad:
    print("FAIL", b)
print(f"{'ok  ' if not bad else 'FAIL'} {len(links)} links checked")
sys.exit(1 if bad or len(links) < 20 else 0)
PY
then :; else fail=1; fi

exit $fail
