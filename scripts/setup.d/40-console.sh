# Builds the web console (web/, React + Vite) into web/dist, which `kubevisa server` serves at `/`. Sourced by
# scripts/setup.sh; rebuilds only when a source file, the Vite config or the lock file changed (a hash marker).
kv_console_hash=$(cd "$kv_root" && find web -path web/dist -prune -o -type f -print0 | sort -z |
  xargs -0 sha256sum | cat - package-lock.json | sha256sum | cut -c1-16)
if [[ ! -f "$kv_root/web/dist/.kubevisa-build-$kv_console_hash" ]]; then
  kv_log "building the web console (vite build web, ~10 s)"
  (cd "$kv_root" && node node_modules/vite/bin/vite.js build web --logLevel warn >&2)
  touch "$kv_root/web/dist/.kubevisa-build-$kv_console_hash"
fi
kv_log "web console: $kv_root/web/dist"
