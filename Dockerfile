# syntax=docker/dockerfile:1
# Node 24 is the active LTS line (supported into 2028); Node 20 is end-of-life and 22 is in
# maintenance. The tests also run on Node 24 in CI (.ci/run), so this image runs what was tested.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# The verifier is a workspace of the repository (package-lock.json lists it, the build compiles it
# first); the server does not use it, and the runtime stage has none of it (below).
COPY packages/verify ./packages/verify
COPY src ./src
COPY migrations ./migrations
# Installs every dependency and compiles (the prepare script runs the build).
RUN npm ci --no-audit --no-fund
# Only production dependencies go forward; npm keeps a workspace's link even so, and the verifier's
# would dangle in the runtime stage (no packages/ there), so it goes by hand.
RUN npm prune --omit=dev --no-audit --no-fund && rm -r node_modules/@tessera-auth

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/var/lib/tessera
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root openapi.yaml ./openapi.yaml
# The image's files belong to root and are read-only to the service; it writes only to DATA_DIR.
RUN mkdir -p /var/lib/tessera && chown 1000:1000 /var/lib/tessera
# Numeric, so that runAsNonRoot can check it (the image's `node` user is 1000:1000).
USER 1000:1000
EXPOSE 3000
# No curl in the image: Node itself asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM, and Tessera drains and exits 0 on it.
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve"]
