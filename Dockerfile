# syntax=docker/dockerfile:1

# chatico-mapper: Node 24 runs src/*.ts directly (type stripping), so there is no build step;
# the image is just production dependencies plus the source.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- Stage 1: production dependencies only ---------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# --omit=dev drops the pinned `node` devDependency (and its install script), vitest, tsc, dclint:
# the base image already provides Node 24.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---- Stage 2: runtime ------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=8000 \
    HOST=0.0.0.0
WORKDIR /app

COPY --from=deps --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node package.json ./
# src/ includes src/migrations/, which the service applies itself at start-up.
COPY --chown=node:node src ./src

USER node
EXPOSE 8000

# Slim images have no curl: use Node's built-in fetch. 503 (degraded) counts as unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/monitoring/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Run node directly (not `npm start`) so SIGTERM reaches the process and shutdown is graceful;
# the same flags as `npm start` (package.json: a 16 MB semi-space, see the README).
CMD ["node", "--max-semi-space-size=16", "--heap-growing-percent=50", "src/main.ts"]
