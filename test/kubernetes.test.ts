import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type Config, ConfigError, loadConfig } from '../src/config.js';
import {
  MANIFESTS,
  type KubernetesObject,
  buildKustomization,
  cores,
  documentedConfigNames,
  isObject,
  mebibytes,
  readManifest,
  readRepositoryFile,
  unknownFields,
  validateSchema,
} from './helpers/kubernetes.js';

// deploy/kubernetes (DESIGN.md, Running in production; README, Deploying on Kubernetes): what
// `kubectl apply -k` applies, checked against the Kubernetes API schemas and against what
// Tessera, its Dockerfile, README and BENCHMARKS.md say. No cluster and no network.

interface Probe {
  httpGet: { path: string; port: string | number };
  periodSeconds: number;
  timeoutSeconds: number;
  failureThreshold: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports: { name: string; containerPort: number }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }[];
  startupProbe: Probe;
  livenessProbe: Probe;
  readinessProbe: Probe;
  resources: { requests: { memory: string; cpu: string }; limits: { memory: string; cpu: string } };
  securityContext: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] } };
}
interface PodSpec {
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds: number;
  securityContext: Record<string, unknown> & { seccompProfile?: { type: string } };
  containers: Container[];
  volumes?: unknown[];
}
type Deployment = KubernetesObject & {
  spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
};
type Service = KubernetesObject & { spec: { type: string; selector: Record<string, string>; ports: { name: string; port: number; targetPort: string | number }[] } };
type PodDisruptionBudget = KubernetesObject & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } };
type ConfigMap = KubernetesObject & { data: Record<string, string> };
type Secret = KubernetesObject & { data?: Record<string, string>; stringData?: Record<string, string> };

const { resources, objects } = buildKustomization();
const secretExample = readManifest('secret.example.yaml');

function only<T extends KubernetesObject>(kind: string): T {
  const found = objects.filter((object) => object.kind === kind);
  expect(found.map((object) => object.metadata.name), `one ${kind} in the kustomization`).toHaveLength(1);
  return found[0] as T;
}
const deployment = only<Deployment>('Deployment');
const service = only<Service>('Service');
const budget = only<PodDisruptionBudget>('PodDisruptionBudget');
const configMap = only<ConfigMap>('ConfigMap');
const secret = secretExample[0] as Secret;
const pod = deployment.spec.template.spec;
const container = pod.containers[0]!;
const secretKeys = Object.keys({ ...secret.data, ...secret.stringData });

/** Tessera's configuration in the pod: the image's NODE_ENV, the ConfigMap, and working secrets. */
function podConfig(): Config {
  return loadConfig({
    NODE_ENV: 'production',
    ...configMap.data,
    DATABASE_URL: 'postgres://tessera:secret@postgres:5432/tessera',
    KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64'),
  });
}

function containsLabels(labels: Record<string, string>, selector: Record<string, string>): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value);
}

describe('deploy/kubernetes: the manifests', () => {
  it('kustomization.yaml lists every manifest but the Secret example, and each parses', () => {
    const files = readdirSync(MANIFESTS).filter((file) => file.endsWith('.yaml') && file !== 'kustomization.yaml');
    expect(resources.toSorted()).toEqual(files.filter((file) => file !== 'secret.example.yaml').toSorted());
    expect(objects.map((object) => object.kind).toSorted()).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service']);
    // `kubectl apply -k` must never write placeholder credentials into a cluster.
    expect(objects.filter((object) => object.kind === 'Secret')).toEqual([]);
    expect(secretExample.map((object) => object.kind)).toEqual(['Secret']);
  });

  it('every manifest, the Secret example included, is valid against the Kubernetes API schemas', async () => {
    for (const object of [...objects, ...secretExample]) {
      await validateSchema(object).catch((error: unknown) => {
        throw new Error(`${object.kind} ${object.metadata.name}: ${(error as Error).message}`);
      });
    }
  });

  it('no manifest has a field the API does not define (kubectl --validate=strict)', { timeout: 60_000 }, () => {
    expect(unknownFields([...objects, ...secretExample])).toEqual([]);
  });

  it('the checks refuse a wrong type and a misspelt field', { timeout: 60_000 }, async () => {
    const broken = structuredClone(deployment);
    (broken.spec as Record<string, unknown>)['replicas'] = '2';
    (broken.spec.template.spec.containers[0]!.securityContext as Record<string, unknown>)['readOnlyRootFileSystem'] = true;
    await expect(validateSchema(broken)).rejects.toThrow('data/spec/replicas must be integer');
    const problems = unknownFields([broken]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^Deployment tessera: "replicas": "2", Type 'string' is not assignable to type 'number'/);
    expect(problems[1]).toMatch(/^Deployment tessera: "readOnlyRootFileSystem": true Object literal may only specify known properties/);
  });

  it('kubectl kustomize, where installed, builds the same objects', (context) => {
    let built: string;
    try {
      built = execFileSync('kubectl', ['kustomize', MANIFESTS], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return context.skip('kubectl is not installed');
      throw error;
    }
    const byName = (a: KubernetesObject, b: KubernetesObject) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`);
    const fromKubectl = parseAllDocuments(built).map((document) => document.toJS() as KubernetesObject);
    expect(fromKubectl.toSorted(byName)).toEqual(objects.toSorted(byName));
  });
});

describe('deploy/kubernetes: the Deployment', () => {
  it('runs two replicas of the image, with Node as PID 1 serving', () => {
    expect(deployment.spec.replicas).toBe(2);
    expect(pod.containers).toHaveLength(1);
    expect(container.image).toMatch(/^[\w.-]+(\/[\w.-]+)+:[\w.-]+$/);
    // No `command`: the image's ENTRYPOINT (node dist/src/cli/main.js) stays PID 1 and gets SIGTERM.
    expect(readRepositoryFile('Dockerfile')).toContain('ENTRYPOINT ["node", "dist/src/cli/main.js"]');
    expect(container.command).toBeUndefined();
    expect(container.args).toEqual(['serve']);
  });

  it('probes /healthz for start-up and liveness and /readyz for readiness, on the port Tessera listens on', () => {
    const config = podConfig();
    const http = container.ports.find((port) => port.name === 'http');
    expect(http?.containerPort).toBe(config.port);
    expect(container.ports.find((port) => port.name === 'metrics')?.containerPort).toBe(config.metricsPort);
    expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    // The server listens only after reaching PostgreSQL (retried up to DATABASE_CONNECT_TIMEOUT)
    // and migrating: the start-up probe must wait longer than that before the kubelet kills it.
    const { periodSeconds, failureThreshold } = container.startupProbe;
    expect(periodSeconds * failureThreshold).toBeGreaterThan(podConfig().databaseConnectTimeout);
    // And with the default, should the ConfigMap come to leave it out.
    expect(loadConfig({}).databaseConnectTimeout).toBe(30);
    expect(periodSeconds * failureThreshold).toBeGreaterThan(loadConfig({}).databaseConnectTimeout);
    // /readyz waits up to 1 s for the database: a probe timeout of 1 s would fail before it answers.
    expect(container.readinessProbe.timeoutSeconds).toBeGreaterThan(1);
  });

  it('runs as a non-root user with no privileges, no capabilities, no token and a read-only root', () => {
    const user = /^USER (\d+):(\d+)$/m.exec(readRepositoryFile('Dockerfile'));
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: Number(user?.[1]),
      runAsGroup: Number(user?.[2]),
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.securityContext).toEqual({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    // With DATABASE_URL Tessera writes no file: no writable volume to hand it.
    expect(pod.volumes).toBeUndefined();
  });

  it('gives SIGTERM longer than SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT before SIGKILL', () => {
    const { shutdownDelay, shutdownTimeout } = podConfig();
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(shutdownDelay + shutdownTimeout);
    // And with the defaults, should the ConfigMap come to leave them out.
    const defaults = loadConfig({});
    expect([defaults.shutdownDelay, defaults.shutdownTimeout]).toEqual([5, 10]);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(defaults.shutdownDelay + defaults.shutdownTimeout);
  });

  it('requests and limits what its comment cites from BENCHMARKS.md, and the figures are there', () => {
    const manifest = readRepositoryFile('deploy/kubernetes/deployment.yaml');
    const benchmarks = readRepositoryFile('BENCHMARKS.md');
    const onePass = benchmarks.slice(benchmarks.indexOf('## Latest results'), benchmarks.indexOf('Two processes'));
    // The memory figures, quoted as BENCHMARKS.md has them.
    const rss = /RSS (\d+) MB idle, (\d+) MB after the password grant, (\d+) MB peak/.exec(onePass);
    expect(rss).not.toBeNull();
    expect(manifest).toContain(rss![0]);
    expect(manifest).toContain(/Commit (\w+)/.exec(onePass)![1]);
    const [afterLogins, peak] = [Number(rss![2]), Number(rss![3])];
    // The CPU figures: each endpoint's req/s x CPU ms per request, as the comment computes them.
    const table = [...onePass.matchAll(/^\| ([A-Za-z ]+) \| ([\d,.]+) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|/gm)];
    expect(table.map((row) => row[1])).toEqual(['password grant', 'refresh', 'client credentials', 'JWKS', 'introspection', 'userinfo']);
    const used = table.map(([, endpoint, rate, cpu]) => {
      const value = (Number(rate!.replace(/,/g, '')) * Number(cpu)) / 1000;
      expect(manifest.replace(/\n\s*#\s*/g, ' ')).toContain(`${endpoint} ${rate} x ${cpu} = ${value.toFixed(2)}`);
      return value;
    });
    // The comment's line for each value names the value the manifest has.
    const { requests, limits } = container.resources;
    expect(manifest).toContain(`# requests.memory ${requests.memory}:`);
    expect(manifest).toContain(`# limits.memory ${limits.memory}:`);
    expect(manifest).toContain(`# requests.cpu ${requests.cpu}:`);
    expect(manifest).toContain(`# limits.cpu ${limits.cpu}:`);
    // bench/run.mjs's MB are /proc's kB / 1024: MiB.
    expect(mebibytes(requests.memory)).toBeGreaterThanOrEqual(afterLogins);
    expect(mebibytes(limits.memory)).toBeGreaterThanOrEqual(1.5 * peak);
    expect(cores(requests.cpu)).toBeGreaterThanOrEqual(Math.min(...used));
    expect(cores(limits.cpu)).toBeGreaterThanOrEqual(Math.max(...used));
    // Those are one process's figures.
    expect(podConfig().webConcurrency).toBe(1);
  });
});

describe('deploy/kubernetes: the Service and the PodDisruptionBudget', () => {
  it('the Service selects the pods and sends port 80 to the http port and the metrics port to metrics', () => {
    const labels = deployment.spec.template.metadata.labels;
    expect(containsLabels(labels, deployment.spec.selector.matchLabels)).toBe(true);
    expect(service.spec.type).toBe('ClusterIP');
    expect(containsLabels(labels, service.spec.selector)).toBe(true);
    expect(service.spec.ports.map(({ name, port, targetPort }) => ({ name, port, targetPort }))).toEqual([
      { name: 'http', port: 80, targetPort: 'http' },
      { name: 'metrics', port: podConfig().metricsPort, targetPort: 'metrics' },
    ]);
    const containerPorts = container.ports.map((port) => port.name);
    for (const { targetPort } of service.spec.ports) expect(containerPorts).toContain(targetPort);
  });

  it('the PodDisruptionBudget keeps one of the two pods through a drain', () => {
    expect(budget.spec.minAvailable).toBe(1);
    expect(budget.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
    expect(containsLabels(deployment.spec.template.metadata.labels, budget.spec.selector.matchLabels)).toBe(true);
  });
});

describe('deploy/kubernetes: configuration', () => {
  it('the ConfigMap is a configuration Tessera starts with', () => {
    expect(() => podConfig()).not.toThrow();
  });

  it('every variable comes from the ConfigMap or the Secret example, and README documents it', () => {
    const documented = [...documentedConfigNames()];
    expect(documented).toContain('SHUTDOWN_TIMEOUT'); // the table was found
    expect(container.envFrom).toEqual([{ configMapRef: { name: configMap.metadata.name } }]);
    for (const key of Object.keys(configMap.data)) expect(documented, `ConfigMap key ${key}`).toContain(key);
    for (const variable of container.env ?? []) {
      expect(documented, `env ${variable.name}`).toContain(variable.name);
      const fromSecret = variable.valueFrom?.secretKeyRef;
      const fromConfigMap = variable.valueFrom?.configMapKeyRef;
      if (fromSecret) {
        expect(fromSecret.name).toBe(secret.metadata.name);
        expect(secretKeys).toContain(fromSecret.key);
      } else if (fromConfigMap) {
        expect(fromConfigMap.name).toBe(configMap.metadata.name);
        expect(Object.keys(configMap.data)).toContain(fromConfigMap.key);
      } else {
        throw new Error(`env ${variable.name} is set in the Deployment, not in the ConfigMap or the Secret`);
      }
    }
    expect((container.env ?? []).map((variable) => variable.name).toSorted()).toEqual(secretKeys.toSorted());
  });

  it('secrets are in the Secret only, and the example holds placeholders Tessera refuses to start on', () => {
    for (const key of secretKeys) expect(Object.keys(configMap.data)).not.toContain(key);
    expect(Object.keys(configMap.data).filter((key) => /PASSWORD|_KEYS?$|^(DATABASE|REDIS|SMTP)_URL$/.test(key))).toEqual([]);
    const values = Object.values({ ...secret.data, ...secret.stringData });
    for (const value of values) expect(value).toContain('CHANGE-ME');
    expect(isObject(secret.stringData)).toBe(true);
    expect(() => loadConfig({ NODE_ENV: 'production', ...configMap.data, ...secret.stringData })).toThrow(ConfigError);
  });
});
