# Debian's Chromium for the console's browser tests (playwright-core drives it; no browser is ever downloaded).
# Sourced by scripts/setup.sh; installs only when /usr/bin/chromium is missing (apt-get, as root).
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    kv_log "please install Debian's chromium package (the console tests drive /usr/bin/chromium)"
    return 1
  fi
  kv_log "installing chromium from Debian's packages (~1 minute)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
kv_log "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo 'not runnable')"
