#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at a throwaway PgBouncer (transaction
# pooling, free loopback port) in front of DATABASE_URL's PostgreSQL, and with
# DATABASE_POOLING=pgbouncer. PgBouncer refuses to run as root: as root it runs as
# the postgres user. Stopped by its PID when the command ends.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/lithtrix \
#     testing/pgbouncer.sh .venv/bin/pytest -m requires_postgres
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL must point at PostgreSQL}"
pgbouncer_bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$pgbouncer_bin" ] || { echo "pgbouncer is not installed (apt-get install -y pgbouncer)" >&2; exit 1; }

# postgres://user[:password]@host:port/name
rest=${DATABASE_URL#*://}
userinfo=${rest%%@*}
user=${userinfo%%:*}
hostport=${rest#*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport#*:}; [ "$port" = "$hostport" ] && port=5432
name=${rest#*/}; name=${name%%\?*}
bouncer_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

dir=$(mktemp -d)
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$host port=$port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
printf '"%s" ""\n' "$user" >"$dir/users.txt"
run_as=()
if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$dir"
    run_as=(runuser -u postgres --)
fi
"${run_as[@]}" "$pgbouncer_bin" -d "$dir/pgbouncer.ini"
stop() {
    if [ -f "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
    sleep 0.2
    rm -rf "$dir"
}
trap stop EXIT
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$bouncer_port") 2>/dev/null && break
    sleep 0.1
done
echo "pgbouncer (transaction pooling) on 127.0.0.1:$bouncer_port -> $host:$port" >&2
DATABASE_URL="postgres://$userinfo@127.0.0.1:$bouncer_port/$name" DATABASE_POOLING=pgbouncer "$@"
