# kubevisa's container image: the npm package (`npm pack`, as `npx kubevisa` gets it) installed with its production
# dependencies only, on a distroless Node.js 24 base: no shell, no package manager, a non-root user. The Helm chart
# runs it with a read-only root filesystem; kubevisa writes only to its data folder and /tmp (volumes).
#   docker build -t kubevisa:0.1.0 .
# See docs/install.md. test/package.test.ts runs this ENTRYPOINT in a folder laid out as /opt/kubevisa is here.

ARG NODE_IMAGE=node:24-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY . .
# prepack compiles the TypeScript into dist/ (scripts/build-package.ts); the tarball holds what `files` lists.
RUN npm pack --pack-destination /tmp \
 && mkdir -p /opt/kubevisa \
 && cd /opt/kubevisa \
 && echo '{"name":"kubevisa-image","private":true}' > package.json \
 && npm install --omit=dev --no-audit --no-fund --loglevel=error /tmp/kubevisa-*.tgz

FROM ${RUNTIME_IMAGE}
COPY --from=build /opt/kubevisa /opt/kubevisa
USER 65532:65532
WORKDIR /var/lib/kubevisa
EXPOSE 8443
# node directly (the image has no /usr/bin/env for the launcher's shebang), with the flags every kubevisa process runs with.
ENTRYPOINT ["/nodejs/bin/node", "--disable-warning=ExperimentalWarning", "--disable-proto=throw", "/opt/kubevisa/node_modules/kubevisa/dist/bin/kubevisa"]
CMD ["server", "--config", "/etc/kubevisa/config/server.yaml"]
