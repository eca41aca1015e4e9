# Helm v4.3.2 for the chart's tests (helm lint, helm template; test/helm.test.ts), built from Go modules into the
# cache by scripts/helm-binary.sh on first use (about 2 minutes on 2 cores). Exports KUBEVISA_HELM, its path.
# Sourced by scripts/setup.sh.
KUBEVISA_HELM=$("$kv_root/scripts/helm-binary.sh" | tail -n 1)
export KUBEVISA_HELM
kv_log "helm: $KUBEVISA_HELM"
