#!/bin/sh
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1 and a free port.
#
#   tools/pg-test-cluster.sh install      install Debian's postgresql package if missing
#   tools/pg-test-cluster.sh start DIR    initdb in DIR, start, create database gsomia,
#                                         print its URL (postgresql+psycopg://...)
#   tools/pg-test-cluster.sh url DIR      print the URL of the cluster running in DIR
#   tools/pg-test-cluster.sh stop DIR     stop it and delete it and DIR
#
# DIR keeps the port and where the cluster is; as root the cluster itself lives in a
# postgres-owned folder under /tmp (DIR's parents may be closed to other users).
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user
# (created by the Debian package). Durability settings are off: the cluster is a test
# fixture that dies with the test session; the node's own durability is tested on SQLite.
set -eu

die() { echo "pg-test-cluster: $*" >&2; exit 1; }

bindir() {
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
    return 1
}

install() {
    if bindir >/dev/null; then return 0; fi
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
    echo "pg-test-cluster: installing Debian's postgresql package" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
    bindir >/dev/null || die "postgresql installed but initdb not found"
}

# Run a command as the cluster owner.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    dir=$1
    install
    bin=$(bindir)
    [ -e "$dir/cluster" ] && die "$dir already holds a cluster (stop it first)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # The cluster lives where its owner can reach it: as root (owner postgres) a folder of
    # its own under /tmp, since DIR's parents may be closed to other users.
    if [ "$(id -u)" = 0 ]; then
        c=$(mktemp -d "${TMPDIR:-/tmp}/gsomia-pg.XXXXXX")
        chmod 755 "$c"
    else
        c="$dir/pg"
        mkdir -p "$c"
    fi
    echo "$c" >"$dir/cluster"
    mkdir -p "$c/sock"
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$c"; fi
    as_owner "$bin/initdb" -D "$c/data" -U postgres -A trust --no-sync -E UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || as_owner "$bin/initdb" -D "$c/data" -U postgres -A trust --no-sync -E UTF8 \
            --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    tries=0
    while :; do
        port=$(free_port)
        if as_owner "$bin/pg_ctl" -D "$c/data" -l "$c/server.log" -w -t 60 \
            -o "-h 127.0.0.1 -p $port -k $c/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
            start >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        [ $tries -lt 3 ] || { cat "$c/server.log" >&2; die "the server did not start"; }
    done
    echo "$port" >"$dir/port"
    "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE gsomia" >/dev/null || die "could not create the database"
    url "$dir"
}

url() {
    dir=$1
    [ -f "$dir/port" ] || die "no cluster running in $dir"
    echo "postgresql+psycopg://postgres@127.0.0.1:$(cat "$dir/port")/gsomia"
}

stop() {
    dir=$1
    bin=$(bindir) || die "PostgreSQL is not installed"
    [ -f "$dir/cluster" ] || { rm -rf "$dir"; return 0; }
    c=$(cat "$dir/cluster")
    if [ -e "$c/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$c/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    case "$c" in
        */gsomia-pg.*|"$dir"/pg) rm -rf "$c" ;;
    esac
    rm -rf "$dir"
}

cmd=${1:-}
case "$cmd" in
    install) install ;;
    start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    url) [ $# -eq 2 ] || die "usage: $0 url DIR"; url "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 install | start DIR | url DIR | stop DIR" ;;
esac
