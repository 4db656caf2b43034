#!/bin/sh
# Planned failover of the Sentinel-monitored Redis primary on this host, losing no acknowledged
# write (Redis's documented CLIENT PAUSE procedure). SENTINEL FAILOVER alone treats the primary as
# gone: it keeps taking writes until the Sentinels demote it seconds later, and those writes are
# then thrown away when it resyncs from the promoted replica. Here:
#   1. CLIENT PAUSE WRITE: the primary holds every write (reads go on; the pause ends by itself
#      after PAUSE_MS whatever happens to this script);
#   2. wait until every connected replica has acknowledged the primary's replication offset;
#   3. SENTINEL FAILOVER: the Sentinels promote a replica;
#   4. as soon as that replica says it is a primary, this Redis becomes its replica (REPLICAOF,
#      CONFIG REWRITE: what the Sentinels would do seconds later);
#   5. once the Sentinels name the new primary, CLIENT UNPAUSE: the held writes get READONLY, and
#      the app's clients reconnect to the primary the Sentinels name and retry there.
# Usage: planned_failover.sh MASTER_NAME PORT SENTINEL_PORT PAUSE_MS
# Passwords in the environment: REDISCLI_AUTH (Redis's default user), SENTINEL_AUTH (Sentinel).
# Prints "OLD_ADDRESS NEW_ADDRESS"; exits 1 when a step fails (before SENTINEL FAILOVER with the
# pause lifted, after it with the pause left to end by itself).
set -eu
name=$1 port=$2 sentinel_port=$3 pause_ms=$4

redis() { redis-cli -p "$port" --no-auth-warning "$@"; }
sentinel() { REDISCLI_AUTH=$SENTINEL_AUTH redis-cli -p "$sentinel_port" --no-auth-warning "$@"; }
# "ADDRESS PORT" of the primary as the Sentinel at $1 $2 reports it to clients (SENTINEL MASTER, which
# redis-py reads: it changes only when the failover has ended, unlike get-master-addr-by-name)
primary_of() {
  REDISCLI_AUTH=$SENTINEL_AUTH redis-cli -h "$1" -p "$2" --no-auth-warning SENTINEL MASTER "$name" |
    awk 'key == "ip" { ip = $0 } key == "port" { print ip, $0; exit } { key = $0 }'
}
named() { primary_of 127.0.0.1 "$sentinel_port"; }
fail() { echo "planned failover: $*" >&2; exit 1; }
now() { date +%s; }

old=$(named)
[ "$(redis ROLE | head -n 1)" = master ] || fail "this Redis is not a primary (ROLE: $(redis ROLE | head -n 1))"

[ "$(redis CLIENT PAUSE "$pause_ms" WRITE)" = OK ] || fail "CLIENT PAUSE refused"
trap 'redis CLIENT UNPAUSE >/dev/null' EXIT

deadline=$(($(now) + 5))
while :; do
  info=$(redis INFO replication | tr -d '\r')
  offset=$(echo "$info" | sed -n 's/^master_repl_offset://p')
  replicas=$(echo "$info" | grep -c '^slave[0-9]*:' || true)
  behind=$(echo "$info" | grep '^slave[0-9]*:' | grep -vc ",offset=$offset," || true)
  [ "$replicas" -gt 0 ] || fail "no replica connected: nothing to promote"
  [ "$behind" -eq 0 ] && break
  [ "$(now)" -lt "$deadline" ] || fail "$behind replica(s) still behind offset $offset after 5 s"
  sleep 0.1
done

[ "$(sentinel SENTINEL FAILOVER "$name")" = OK ] || fail "SENTINEL FAILOVER refused"
# From here on a failure leaves the pause to end by itself: the Sentinels finish the failover
# meanwhile, and the held writes then find this Redis a replica instead of landing on a primary
# that is about to be thrown away.
trap - EXIT

# The promoted replica is the first to answer ROLE master: this Redis replicates it at once, so
# that the app's first writes there find a replica for their WAIT.
replicas=$(echo "$info" | sed -n 's/^slave[0-9]*:ip=\([^,]*\),port=\([0-9]*\),.*/\1 \2/p')
deadline=$(($(now) + 10))
new=
while [ -z "$new" ]; do
  new=$(echo "$replicas" | while read -r ip rport; do
    if [ "$(redis-cli -h "$ip" -p "$rport" --no-auth-warning ROLE | head -n 1)" = master ]; then
      echo "$ip $rport"
      break
    fi
  done)
  [ -n "$new" ] || [ "$(now)" -lt "$deadline" ] || fail "no replica promoted within 10 s"
  [ -n "$new" ] || sleep 0.05
done
# shellcheck disable=SC2086  # "ADDRESS PORT"
[ "$(redis REPLICAOF $new)" = OK ] || fail "REPLICAOF $new refused"
[ "$(redis CONFIG REWRITE)" = OK ] || fail "CONFIG REWRITE refused"

# Writes are let go once the Sentinels give clients the new primary (the app's clients ask them
# where to reconnect): this host's Sentinel within 10 s of the failover, or it failed; the others
# are waited for within the same time.
others=$(sentinel SENTINEL sentinels "$name" | awk 'key == "ip" { ip = $0 } key == "port" { print ip, $0 } { key = $0 }')
until [ "$(named)" = "$new" ]; do
  [ "$(now)" -lt "$deadline" ] || fail "this host's Sentinel gives no new primary within 10 s (still $(named))"
  sleep 0.05
done
echo "$others" | while read -r ip sport; do
  [ -n "$ip" ] || continue
  until [ "$(primary_of "$ip" "$sport")" = "$new" ] || [ "$(now)" -ge "$deadline" ]; do
    sleep 0.05
  done
done

redis CLIENT UNPAUSE >/dev/null
echo "${old% *} ${new% *}"
