#!/bin/sh
# Starts Alertmanager with SMTP settings taken from the environment: the shipped
# alertmanager.yml is copied with these keys replaced when the variables are set.
#   SMTP_SMARTHOST      host:port of the relay          (default: mailpit:1025)
#   SMTP_FROM           sender address
#   SMTP_REQUIRE_TLS    true | false
#   SMTP_AUTH_USERNAME  enables auth; the password is read from SMTP_AUTH_PASSWORD_FILE
#   SMTP_AUTH_PASSWORD_FILE  (default /run/secrets/smtp_password)
#   ALERT_EMAIL_TO      recipient of the e-mail receiver
#   GRAFANA_URL         base of the dashboard links in notifications (default: the
#                       alerts' own dashboard_url, http://localhost:3000 as rendered)
#   RUNBOOK_URL         base of the runbook links (default: the alerts' runbook_url)
#   SLACK_WEBHOOK_URL_PATH  the Slack webhook secret (default
#                       /etc/alertmanager/secrets/slack_webhook_url). Missing, empty or
#                       the shipped placeholder: the slack receiver delivers nothing
#                       (its routes stay; see docs/alerting.md).
# With --render-only OUT it writes the rendered config to OUT and exits (used by CI);
# link overrides go to ALERTMANAGER_TEMPLATES_OUT (default /tmp/alertmanager-templates).
set -eu
src=${ALERTMANAGER_CONFIG:-/etc/alertmanager/alertmanager.yml}
out=/tmp/alertmanager.yml
render_only=
if [ "${1:-}" = "--render-only" ]; then render_only=1; out=$2; shift 2; fi

# Values are inserted inside single quotes in YAML: double any single quote.
q() { printf "%s" "$1" | sed "s/'/''/g; s/[|&\\\\]/\\\\&/g"; }

cp "$src" "$out"
[ -n "${SMTP_SMARTHOST:-}" ] && sed -i "s|^  smtp_smarthost: .*|  smtp_smarthost: '$(q "$SMTP_SMARTHOST")'|" "$out"
[ -n "${SMTP_FROM:-}" ] && sed -i "s|^  smtp_from: .*|  smtp_from: '$(q "$SMTP_FROM")'|" "$out"
[ -n "${SMTP_REQUIRE_TLS:-}" ] && sed -i "s|^  smtp_require_tls: .*|  smtp_require_tls: $( [ "$SMTP_REQUIRE_TLS" = true ] && echo true || echo false)|" "$out"
if [ -n "${SMTP_AUTH_USERNAME:-}" ]; then
  sed -i "s|^  # smtp_auth_username: .*|  smtp_auth_username: '$(q "$SMTP_AUTH_USERNAME")'|" "$out"
  sed -i "s|^  # smtp_auth_password_file: .*|  smtp_auth_password_file: '$(q "${SMTP_AUTH_PASSWORD_FILE:-/run/secrets/smtp_password}")'|" "$out"
fi
[ -n "${ALERT_EMAIL_TO:-}" ] && sed -i "s|^      - to: crypto-market-alerts@localhost|      - to: '$(q "$ALERT_EMAIL_TO")'|" "$out"

# Slack: without a real webhook the receiver keeps its routes but has no
# slack_configs, so market and health alerts are not sent to a dead URL.
slack=${SLACK_WEBHOOK_URL_PATH:-/etc/alertmanager/secrets/slack_webhook_url}
if [ ! -s "$slack" ] || grep -q 'slack-disabled' "$slack"; then
  echo "crypto-market: no Slack webhook in $slack (set SLACK_WEBHOOK_URL_FILE); Slack notifications are off" >&2
  awk '$0 == "    slack_configs:" { skip = 1; next }
       skip && /^  [-#]/ { skip = 0 }
       !skip' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
fi

# Links: one variable points every notification at another Grafana or runbook. The
# shipped links.tmpl passes the alerts' URLs through; these definitions replace it.
links=${ALERTMANAGER_TEMPLATES_OUT:-/tmp/alertmanager-templates}
if [ -n "${GRAFANA_URL:-}" ] || [ -n "${RUNBOOK_URL:-}" ]; then
  mkdir -p "$links"
  # Inside a Go template string: escape backslashes and double quotes.
  t() { printf "%s" "$1" | sed 's/[\\"]/\\&/g'; }
  : >"$links/links-override.tmpl"
  [ -n "${GRAFANA_URL:-}" ] && printf '{{ define "crypto_market.dashboard_link" }}{{ reReplaceAll "^.*?/d/" "%s/d/" .Annotations.dashboard_url }}{{ end }}\n' \
    "$(t "${GRAFANA_URL%/}")" >>"$links/links-override.tmpl"
  [ -n "${RUNBOOK_URL:-}" ] && printf '{{ define "crypto_market.runbook_link" }}{{ reReplaceAll "^[^#]*" "%s" .Annotations.runbook_url }}{{ end }}\n' \
    "$(t "$RUNBOOK_URL")" >>"$links/links-override.tmpl"
  # After the shipped templates: the definition parsed last wins.
  sed -i "/^templates:\$/{n;s|\$|\n  - '$(q "$links")/*.tmpl'|}" "$out"
fi

[ -n "$render_only" ] && exit 0
exec /bin/alertmanager --config.file="$out" "$@"
