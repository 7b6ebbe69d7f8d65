import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

/** Only the fields the tests read; everything else is checked by the schemas. */
export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

const REPOSITORY = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MANIFESTS = join(REPOSITORY, 'deploy/kubernetes');

/**
 * The Kubernetes objects in one YAML file. YAML 1.1, as the API server and kubectl read it
 * (sigs.k8s.io/yaml): an unquoted `yes` or `on` is a boolean there, and the schemas then refuse it
 * where a string belongs, as the server would.
 */
export function readManifest(file: string): KubernetesObject[] {
  const text = readFileSync(join(MANIFESTS, file), 'utf8');
  return parseAllDocuments(text, { version: '1.1', prettyErrors: true }).flatMap((document) => {
    if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.map((e) => e.message).join('; ')}`);
    const object: unknown = document.toJS();
    if (object === null) return []; // an empty document between two `---`
    if (!isObject(object) || typeof object['apiVersion'] !== 'string' || typeof object['kind'] !== 'string') {
      throw new Error(`${file}: a document without apiVersion and kind`);
    }
    const metadata = object['metadata'];
    if (!isObject(metadata) || typeof metadata['name'] !== 'string') throw new Error(`${file}: ${String(object['kind'])} without metadata.name`);
    return [object as KubernetesObject];
  });
}

/**
 * What `kubectl apply -k` applies, built without kubectl: this kustomization only lists files, so
 * building it is reading them. Any other kustomize feature (patches, generators, images, labels)
 * would change what is applied, so one appearing here fails until this function learns it.
 */
export function buildKustomization(): { resources: string[]; objects: KubernetesObject[] } {
  const [kustomization, ...more] = parseAllDocuments(readFileSync(join(MANIFESTS, 'kustomization.yaml'), 'utf8'), { version: '1.1' });
  if (kustomization === undefined || more.length > 0 || kustomization.errors.length > 0) throw new Error('kustomization.yaml: one valid document expected');
  const spec: unknown = kustomization.toJS();
  if (!isObject(spec)) throw new Error('kustomization.yaml: not a mapping');
  const unknown = Object.keys(spec).filter((key) => !['apiVersion', 'kind', 'resources'].includes(key));
  if (unknown.length > 0) throw new Error(`kustomization.yaml: fields this build does not apply: ${unknown.join(', ')}`);
  if (spec['apiVersion'] !== 'kustomize.config.k8s.io/v1beta1' || spec['kind'] !== 'Kustomization') {
    throw new Error('kustomization.yaml: apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization expected');
  }
  const resources = spec['resources'];
  if (!Array.isArray(resources) || !resources.every((r): r is string => typeof r === 'string')) {
    throw new Error('kustomization.yaml: resources must be a list of file names');
  }
  for (const resource of resources) {
    const path = resolve(MANIFESTS, resource);
    if (relative(MANIFESTS, path).startsWith('..') || !existsSync(path) || !statSync(path).isFile()) {
      throw new Error(`kustomization.yaml: resource ${resource} is not a file in deploy/kubernetes`);
    }
  }
  return { resources, objects: resources.flatMap(readManifest) };
}

// Each model takes its own kind's fields; `never` admits them all, and the schema judges the object.
type Validating = new (data: never) => { validate(): void };

/** The kinds deploy/kubernetes uses; another kind needs its line here. */
const MODELS: Record<string, () => Promise<Validating>> = {
  'v1/ConfigMap': async () => (await import('kubernetes-models/v1/ConfigMap')).ConfigMap,
  'v1/Secret': async () => (await import('kubernetes-models/v1/Secret')).Secret,
  'v1/Service': async () => (await import('kubernetes-models/v1/Service')).Service,
  'apps/v1/Deployment': async () => (await import('kubernetes-models/apps/v1/Deployment')).Deployment,
  'policy/v1/PodDisruptionBudget': async () => (await import('kubernetes-models/policy/v1/PodDisruptionBudget')).PodDisruptionBudget,
};

/**
 * The object against its kind's JSON schema from kubernetes-models, generated from the Kubernetes
 * OpenAPI document and compiled with ajv ahead of time: no network. Throws the schema's errors.
 */
export async function validateSchema(object: KubernetesObject): Promise<void> {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (model === undefined) throw new Error(`no Kubernetes schema for ${object.apiVersion} ${object.kind}`);
  new (await model())(object as never).validate();
}

/**
 * Fields the schemas do not know. The OpenAPI schemas allow unknown fields, but the API server
 * refuses them under kubectl's default `--validate=strict`, and a misspelt field such as
 * `readOnlyRootFileSystem` would otherwise pass unnoticed. kubernetes-models' types are generated
 * from the same document, so each object is type-checked as an object literal of its kind's type:
 * TypeScript reports every property the type does not declare (and every wrong type).
 */
export function unknownFields(objects: readonly KubernetesObject[]): string[] {
  const file = join(REPOSITORY, 'test', 'kubernetes-manifests.generated.ts');
  const source = objects
    .map((object, index) => {
      const type = `import('kubernetes-models/${object.apiVersion}/${object.kind}').I${object.kind}`;
      return `// ${object.kind} ${object.metadata.name}\nexport const object${index}: ${type} = ${JSON.stringify(object, null, 2)};\n`;
    })
    .join('\n');
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2023,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, version, ...rest) =>
    name === file ? ts.createSourceFile(name, source, version) : getSourceFile.call(host, name, version, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (diagnostic.file?.fileName !== file || diagnostic.start === undefined) return message;
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    const owner = source.split('\n').slice(0, line).reverse().find((l) => l.startsWith('// ')) ?? '';
    return `${owner.slice(3)}: ${source.split('\n')[line]?.trim()} ${message}`;
  });
}

/** A memory quantity (`256Mi`, `1Gi`, `512M`, bytes) in MiB. */
export function mebibytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity);
  if (!match) throw new Error(`not a memory quantity: ${quantity}`);
  const factor = { Ki: 1 / 1024, Mi: 1, Gi: 1024, k: 1e3 / 2 ** 20, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20 }[match[2] ?? ''] ?? 1 / 2 ** 20;
  return Number(match[1]) * factor;
}

/** A CPU quantity (`1`, `1.5`, `500m`) in cores. */
export function cores(quantity: string | number): number {
  const match = /^(\d+(?:\.\d+)?)(m)?$/.exec(String(quantity));
  if (!match) throw new Error(`not a CPU quantity: ${quantity}`);
  return Number(match[1]) / (match[2] ? 1000 : 1);
}

/** The names in the first column of README's configuration table. */
export function documentedConfigNames(): Set<string> {
  const readme = readFileSync(join(REPOSITORY, 'README.md'), 'utf8');
  const section = /^## Configuration\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  const names = new Set<string>();
  for (const row of section.split('\n').filter((line) => line.startsWith('| `'))) {
    for (const [, name] of (row.split('|')[1] ?? '').matchAll(/`([A-Z0-9_]+)`/g)) names.add(name!);
  }
  return names;
}

export function readRepositoryFile(path: string): string {
  return readFileSync(join(REPOSITORY, path), 'utf8');
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
