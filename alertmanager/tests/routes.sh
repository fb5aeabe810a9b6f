#!/usr/bin/env bash
# Routing tests for alertmanager/alertmanager.yml with amtool: each case names the
# labels of an alert and the receivers it must reach (exit 1 on any mismatch).
# Also validates the notification templates by loading them from the repo.
set -euo pipefail
cd "$(dirname "$0")/../.."
config=alertmanager/alertmanager.yml
fail=0

expect() {
  local receivers=$1; shift
  if out=$(amtool config routes test --config.file="$config" --verify.receivers="$receivers" "$@" 2>&1); then
    echo "ok   $* -> $receivers"
  else
    echo "FAIL $* -> expected $receivers, got: $out"
    fail=1
  fi
}

expect slack,email    alertname=CryptoMarketSpike severity=warning metric=price exchange=kraken pair=btcusd
expect slack,email    alertname=CryptoMarketSpike severity=warning metric=volume exchange=binance pair=ethusdt
expect slack,email    alertname=CryptoMarketPriceDivergence severity=warning exchange=livecoin pair=btcusd
expect email          alertname=SomethingElse severity=warning
expect slack,email    alertname=CryptoMarketExporterDown severity=critical job=crypto-market-exporter instance=exporter:9795
expect slack,email    alertname=CryptoMarketScrapeShardDown severity=critical job=crypto-market-exporter shard=1
expect slack,email    alertname=CryptoMarketUpstreamFailing severity=warning source=cryptowatch
expect slack,email    alertname=CryptoMarketStaleQuotes severity=warning source=cryptowatch
expect slack,email    alertname=CryptoMarketCreditsLow severity=warning source=cryptowatch

# The commented per-subscriber example must stay valid when enabled.
example=$(mktemp)
trap 'rm -f "$example"' EXIT
sed -e 's|^    # - matchers: \[.pair=~"btc\.\*".*|    - matchers: ['"'"'pair=~"btc.*"'"'"', '"'"'alertname="CryptoMarketSpike"'"'"']|' \
    -e 's|^    #   receiver: btc-desk|      receiver: btc-desk|' \
    -e 's|^    #   continue: true|      continue: true|' \
    -e 's|^  # - name: btc-desk|  - name: btc-desk|' \
    -e 's|^  #   email_configs:|    email_configs:|' \
    -e 's|^  #     - to: btc-desk@example.org|      - to: btc-desk@example.org|' \
    -e 's|/etc/alertmanager/templates/|alertmanager/templates/|' \
    "$config" > "$example"
amtool check-config "$example" >/dev/null
config=$example
expect slack,btc-desk,email alertname=CryptoMarketSpike severity=warning exchange=kraken pair=btcusd
expect slack,email    alertname=CryptoMarketSpike severity=warning exchange=kraken pair=ethusd

# SMTP settings from the environment: the rendered config is valid and carries them.
rendered=$(mktemp)
trap 'rm -f "$example" "$rendered"' EXIT
webhook=$(mktemp)
trap 'rm -f "$example" "$rendered" "$webhook"' EXIT
echo "https://hooks.slack.com/services/T000/B000/XXXX" >"$webhook"
SLACK_WEBHOOK_URL_PATH=$webhook ALERTMANAGER_CONFIG=$config SMTP_SMARTHOST="smtp.example.org:587" SMTP_FROM="Crypto O'Alerts <alerts@example.org>" \
  SMTP_REQUIRE_TLS=true SMTP_AUTH_USERNAME=alerts SMTP_AUTH_PASSWORD_FILE=/run/secrets/smtp_password \
  ALERT_EMAIL_TO="ops@example.org" sh alertmanager/entrypoint.sh --render-only "$rendered"
amtool check-config "$rendered" >/dev/null
for want in "smtp_smarthost: 'smtp.example.org:587'" "smtp_from: 'Crypto O''Alerts <alerts@example.org>'" \
            "smtp_require_tls: true" "smtp_auth_username: 'alerts'" \
            "smtp_auth_password_file: '/run/secrets/smtp_password'" "- to: 'ops@example.org'"; do
  if grep -qF -- "$want" "$rendered"; then echo "ok   rendered: $want"; else echo "FAIL rendered config lacks: $want"; fail=1; fi
done

# A configured webhook keeps the Slack config; the shipped placeholder drops it (the
# routes stay valid, the receiver delivers nothing).
if grep -q '^    slack_configs:' "$rendered"; then echo "ok   rendered: slack_configs with a webhook"; else echo "FAIL slack_configs dropped despite a webhook"; fail=1; fi
SLACK_WEBHOOK_URL_PATH=alertmanager/secrets/slack_webhook_url.disabled ALERTMANAGER_CONFIG=$config \
  sh alertmanager/entrypoint.sh --render-only "$rendered" 2>/dev/null
amtool check-config "$rendered" >/dev/null
if grep -q 'slack_configs:' "$rendered"; then echo "FAIL slack_configs kept with the placeholder webhook"; fail=1; else echo "ok   rendered: no slack_configs without a webhook"; fi
config=$rendered
expect slack,email    alertname=CryptoMarketSpike severity=warning exchange=kraken pair=ethusd

exit $fail
