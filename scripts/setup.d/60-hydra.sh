# Ory Hydra, the second OIDC provider the login tests run against (test/login-hydra.test.ts), built from Go
# modules into the cache on first use (several minutes on 2 cores; needs gcc for its SQLite driver) and exported
# as KUBEVISA_HYDRA_BIN. Sourced by scripts/setup.sh.
kv_apt_install gcc gcc
KUBEVISA_HYDRA_BIN=$("$kv_root/scripts/hydra-binary.sh" | tail -n 1)
export KUBEVISA_HYDRA_BIN
kv_log "Ory Hydra: $KUBEVISA_HYDRA_BIN"
