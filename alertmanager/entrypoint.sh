#!/bin/sh
# Starts Alertmanager with SMTP settings taken from the environment: the shipped
# alertmanager.yml is copied with these keys replaced when the variables are set.
#   SMTP_SMARTHOST      host:port of the relay          (default: mailpit:1025)
#   SMTP_FROM           sender address
#   SMTP_REQUIRE_TLS    true | false
#   SMTP_AUTH_USERNAME  enables auth; the password is read from SMTP_AUTH_PASSWORD_FILE
#   SMTP_AUTH_PASSWORD_FILE  (default /run/secrets/smtp_password)
#   ALERT_EMAIL_TO      recipient of the e-mail receiver
# With --render-only OUT it writes the rendered config to OUT and exits (used by CI).
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

[ -n "$render_only" ] && exit 0
exec /bin/alertmanager --config.file="$out" "$@"
