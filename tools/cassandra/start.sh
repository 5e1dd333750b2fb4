#!/usr/bin/env bash
# Starts a throwaway single-node Apache Cassandra 5.0 for the tests of
# database/cassandra. See tools/cassandra/README.md.
#
# Usage: tools/cassandra/start.sh [--port N] [--storage-port N] [--dir DIR]
#                                 [--version V] [--no-tls] [--timeout SECONDS]
#
# The server listens on 127.0.0.1, has PasswordAuthenticator on (superuser
# cassandra/cassandra) and, unless --no-tls, accepts TLS and plain clients on
# the same port (client_encryption_options with optional: true) using a
# self-signed certificate made here. When it is ready the script writes
# DIR/env (export lines for the Go tests) and prints start time and memory.
set -euo pipefail

PORT=9042
STORAGE_PORT=
DIR=
VERSION=${CASSANDRA_VERSION:-}
TLS=1
TIMEOUT=180
CACHE=${CASSANDRA_CACHE:-$HOME/.cache/uptime-coordinator/cassandra}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

die() { echo "start.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--port) PORT=$2; shift 2 ;;
	--storage-port) STORAGE_PORT=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--version) VERSION=$2; shift 2 ;;
	--no-tls) TLS=0; shift ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
if [ -z "$STORAGE_PORT" ]; then
	if [ "$PORT" = 9042 ]; then STORAGE_PORT=7000; else STORAGE_PORT=$((PORT + 1)); fi
fi
DIR=${DIR:-${TMPDIR:-/tmp}/uptime-cassandra-$PORT}

command -v java >/dev/null || die "java not found; Cassandra 5.0 needs Java 11 or 17"
command -v mvn >/dev/null || die "mvn not found; it downloads Cassandra from Maven Central"

if [ -f "$DIR/cassandra.pid" ] && kill -0 "$(cat "$DIR/cassandra.pid")" 2>/dev/null; then
	die "a server started from $DIR is still running (pid $(cat "$DIR/cassandra.pid")); run tools/cassandra/stop.sh --dir $DIR"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	die "port $PORT is already in use"
fi

# --- Download: the Apache Cassandra bin tarball is not published on Maven
# Central for 5.0.x, so resolve cassandra-all and its runtime dependencies
# into a cached lib directory instead.
fetch() { # version
	local v=$1 dest="$CACHE/$1"
	if [ -f "$dest/.complete" ]; then return 0; fi
	mkdir -p "$dest"
	cat >"$dest/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.uptime-coordinator</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$v</version>
    </dependency>
  </dependencies>
</project>
EOF
	echo "start.sh: downloading Cassandra $v and its dependencies from Maven Central into $dest" >&2
	rm -rf "$dest/lib"
	if mvn -B -q -f "$dest/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$dest/lib" >"$dest/mvn.log" 2>&1; then
		touch "$dest/.complete"
		return 0
	fi
	echo "start.sh: Cassandra $v could not be resolved (see $dest/mvn.log)" >&2
	return 1
}
if [ -n "$VERSION" ]; then
	fetch "$VERSION" || die "download of Cassandra $VERSION failed"
else
	for v in 5.0.8 5.0.7 5.0.6; do
		if fetch "$v"; then VERSION=$v; break; fi
	done
	[ -n "$VERSION" ] || die "no Cassandra 5.0.x could be downloaded"
fi
LIB="$CACHE/$VERSION/lib"
JAMM=$(ls "$LIB"/jamm-*.jar 2>/dev/null | head -n1)
[ -n "$JAMM" ] || die "jamm agent jar missing in $LIB"

# --- Configuration: fresh directories on every start.
rm -rf "$DIR"
mkdir -p "$DIR/data" "$DIR/logs" "$DIR/conf"

TLS_YAML=
if [ "$TLS" = 1 ]; then
	command -v keytool >/dev/null || die "keytool not found (part of the JDK); use --no-tls to start without TLS"
	KS_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
	keytool -genkeypair -noprompt -storetype PKCS12 -keystore "$DIR/conf/keystore.p12" \
		-storepass "$KS_PASS" -alias cassandra -keyalg EC -groupname secp256r1 -validity 3650 \
		-dname "CN=localhost" -ext "SAN=dns:localhost,ip:127.0.0.1" >/dev/null 2>&1 ||
		die "keytool could not create the keystore"
	keytool -exportcert -rfc -keystore "$DIR/conf/keystore.p12" -storepass "$KS_PASS" \
		-alias cassandra -file "$DIR/ca.pem" >/dev/null 2>&1 || die "keytool could not export the certificate"
	TLS_YAML="client_encryption_options:
  enabled: true
  optional: true
  keystore: $DIR/conf/keystore.p12
  keystore_password: $KS_PASS
  store_type: PKCS12
  require_client_auth: false"
fi

cat >"$DIR/conf/cassandra.yaml" <<EOF
cluster_name: uptime-coordinator-test
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $PORT
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
data_file_directories: [$DIR/data/data]
commitlog_directory: $DIR/data/commitlog
hints_directory: $DIR/data/hints
saved_caches_directory: $DIR/data/saved_caches
cdc_raw_directory: $DIR/data/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
authenticator:
  class_name: PasswordAuthenticator
authorizer: AllowAllAuthorizer
role_manager:
  class_name: CassandraRoleManager
$TLS_YAML
EOF

cat >"$DIR/conf/logback.xml" <<EOF
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$DIR/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF

# --- Start. JVM options: a 1 GiB heap, and the module exports/opens that
# Cassandra 5.0's conf/jvm17-server.options gives Java 17.
JVM_OPTS=(
	-Xms1g -Xmx1g -Xmn256m
	-XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
	-XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$DIR/logs"
	-Djdk.attach.allowAttachSelf=true
	--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
	--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
	--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
	--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
	--add-exports java.sql/java.sql=ALL-UNNAMED
	--add-exports java.base/java.lang.ref=ALL-UNNAMED
	--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
	--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
	--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
	--add-opens java.base/java.lang.module=ALL-UNNAMED
	--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
	--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
	--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
	--add-opens java.base/jdk.internal.math=ALL-UNNAMED
	--add-opens java.base/jdk.internal.module=ALL-UNNAMED
	--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
	--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
	--add-opens java.base/sun.nio.ch=ALL-UNNAMED
	--add-opens java.base/java.io=ALL-UNNAMED
	--add-opens java.base/java.lang.reflect=ALL-UNNAMED
	--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
	--add-opens java.base/java.lang=ALL-UNNAMED
	--add-opens java.base/java.util=ALL-UNNAMED
	-Dio.netty.tryReflectionSetAccessible=true
	-Dio.netty.allocator.useCacheForAllThreads=true
	-Dio.netty.allocator.maxOrder=11
	-javaagent:"$JAMM"
	-Dcassandra-foreground=yes
	-Dcassandra.config="file://$DIR/conf/cassandra.yaml"
	-Dlogback.configurationFile="file://$DIR/conf/logback.xml"
	-Dcassandra.logdir="$DIR/logs"
	-Dcassandra.storagedir="$DIR/data"
	-Dcassandra.skip_wait_for_gossip_to_settle=0
	-Dcassandra.superuser_setup_delay_ms=0
	-Dcassandra.unsafesystem=true
)

T0=$(date +%s%N)
# setsid: the server gets its own session, so it outlives this script and a
# Ctrl-C in the calling terminal; stop.sh ends it by its pid.
setsid java "${JVM_OPTS[@]}" -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon \
	>"$DIR/logs/stdout.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$DIR/cassandra.pid"

fail() {
	echo "start.sh: $*" >&2
	tail -n 30 "$DIR/logs/system.log" "$DIR/logs/stdout.log" >&2 2>/dev/null || true
	kill "$PID" 2>/dev/null || true
	exit 1
}

deadline=$(($(date +%s) + TIMEOUT))
until grep -q "Startup complete" "$DIR/logs/system.log" 2>/dev/null; do
	kill -0 "$PID" 2>/dev/null || fail "Cassandra exited during start-up"
	[ "$(date +%s)" -lt "$deadline" ] || fail "Cassandra did not start within ${TIMEOUT}s"
	sleep 0.5
done

# Ready when the superuser can log in (the role appears shortly after start).
READY_ARGS=(-host 127.0.0.1 -port "$PORT" -timeout "$((deadline - $(date +%s)))s")
if command -v go >/dev/null; then
	(cd "$ROOT" && go run ./tools/cassandra/ready "${READY_ARGS[@]}") ||
		fail "Cassandra did not accept a cassandra/cassandra login"
else
	until grep -q "Created default superuser role" "$DIR/logs/system.log"; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "the superuser role did not appear within ${TIMEOUT}s"
		sleep 0.5
	done
fi
T1=$(date +%s%N)

{
	echo "export CASSANDRA_TEST_HOST=127.0.0.1"
	echo "export CASSANDRA_TEST_PORT=$PORT"
	echo "export CASSANDRA_TEST_USERNAME=cassandra"
	echo "export CASSANDRA_TEST_PASSWORD=cassandra"
	if [ "$TLS" = 1 ]; then echo "export CASSANDRA_TEST_CA=$DIR/ca.pem"; fi
} >"$DIR/env"

RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
printf 'Cassandra %s ready on 127.0.0.1:%s (pid %s, TLS %s) in %d.%03d s, RSS %d MiB\n' \
	"$VERSION" "$PORT" "$PID" "$([ "$TLS" = 1 ] && echo optional || echo off)" \
	$(((T1 - T0) / 1000000000)) $((((T1 - T0) / 1000000) % 1000)) $((RSS_KB / 1024))
echo "Environment for the tests: source $DIR/env"
