#!/usr/bin/env bash
# Fetches Apache Kafka's broker (`fetch.sh kafka`) or Kafka Connect with Debezium
# (`fetch.sh debezium`) from Maven Central into a cache directory, once, and prints that
# directory (a folder of jars: use it as a `-cp DIR/*` classpath).
#
# The cache is keyed by the pom's checksum, so editing a version fetches again; later runs reuse
# it. Needs java and mvn (Maven 3.8+).
#
# Env: FLEETSYNC_CACHE_DIR  where fetched jars go (default ${XDG_CACHE_HOME:-~/.cache}/fleetsync)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
what="${1:-kafka}"
case "$what" in
    kafka) pom="$here/pom.xml" ;;
    debezium) pom="$here/../debezium/pom.xml" ;;
    *) echo "usage: fetch.sh kafka|debezium" >&2; exit 2 ;;
esac
for tool in java mvn sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch.sh: $tool not found (needed for the Kafka tests)" >&2; exit 1; }
done
cache="${FLEETSYNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetsync}"
sum=$(sha256sum "$pom" | cut -c1-16)
dir="$cache/$what-$sum"
if [[ ! -f "$dir/.complete" ]]; then
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    # The plugin is named by its full coordinates: a bare `dependency:` prefix is not always
    # resolvable from a fresh ~/.m2.
    if ! mvn -q -B -f "$pom" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$dir.tmp" >&2; then
        echo "fetch.sh: mvn could not fetch the $what jars (see above)" >&2
        exit 1
    fi
    cp "$here/log4j2.properties" "$dir.tmp/"
    touch "$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
fi
echo "$dir"
