# PostgreSQL on 127.0.0.1:5432 for the store tests (src/store/postgres*.test.ts, test/postgres*.test.ts): they
# connect as user postgres with trust authentication and each creates and drops a database of its own. When
# nothing listens there, installs Debian's postgresql package if missing, creates its cluster if needed (trusting
# loopback connections: a test database server, never a production one), starts it and waits until it accepts
# connections. Sourced by scripts/setup.sh; idempotent.
kv_postgres_listening() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

kv_setup_postgres() {
  if kv_postgres_listening; then
    kv_log "PostgreSQL: listening on 127.0.0.1:5432"
    return 0
  fi
  kv_apt_install pg_ctlcluster postgresql || return 1
  local version
  version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [[ -z "$version" ]]; then
    kv_log "PostgreSQL: no server found under /usr/lib/postgresql after installing postgresql"
    return 1
  fi
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [[ ! -f "$hba" ]]; then
    kv_log "PostgreSQL $version: creating cluster main"
    pg_createcluster "$version" main >/dev/null
  fi
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    kv_log "PostgreSQL $version: trusting loopback connections (test server)"
    printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust' |
      cat - "$hba" >"$hba.kubevisa" && mv "$hba.kubevisa" "$hba"
    chown postgres:postgres "$hba"
  fi
  kv_log "PostgreSQL $version: starting"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  local waited=0
  until kv_postgres_listening && pg_isready -q -h 127.0.0.1 -p 5432; do
    if [[ $waited -ge 60 ]]; then
      kv_log "PostgreSQL $version: not accepting connections on 127.0.0.1:5432 after 60 s; see /var/log/postgresql/"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  kv_log "PostgreSQL $version: ready on 127.0.0.1:5432"
}

# A second cluster, of kubevisa's tests alone, on 127.0.0.1:5433: the fault tests restart PostgreSQL
# (test/postgres-durability.test.ts, test/replicas-leader.test.ts), and restarting the machine's own would cut off
# every other test using it at the same moment. Created once, then started if stopped.
kv_setup_postgres_faults() {
  local version port=5433 name=kvfaults
  version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$version" ]] || return 1
  local hba="/etc/postgresql/$version/$name/pg_hba.conf"
  if [[ ! -f "$hba" ]]; then
    kv_log "PostgreSQL $version: creating cluster $name on port $port for the restart tests (a few seconds)"
    pg_createcluster "$version" "$name" -p "$port" >/dev/null || return 1
    printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust' >"$hba"
    chown postgres:postgres "$hba"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start || return 1
    local waited=0
    until pg_isready -q -h 127.0.0.1 -p "$port"; do
      if [[ $waited -ge 60 ]]; then
        kv_log "PostgreSQL $version/$name: not accepting connections on 127.0.0.1:$port after 60 s"
        return 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
  fi
  export KUBEVISA_TEST_POSTGRES_CLUSTER=$name
  export KUBEVISA_TEST_POSTGRES_RESTART_URL="postgres://postgres@127.0.0.1:$port/postgres"
  kv_log "PostgreSQL $version/$name: ready on 127.0.0.1:$port (restarted by the fault tests)"
}

kv_setup_postgres && kv_setup_postgres_faults
