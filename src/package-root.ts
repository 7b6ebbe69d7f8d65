import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The directory holding package.json, whether running from src/ (tests) or dist/src/ (built). */
export function findPackageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error('package.json not found above ' + from);
  }
}

/** The version in package.json, the one npm installed (`tessera --version`, tessera_build_info, service.version). */
export function readPackageVersion(): string {
  const manifest = JSON.parse(readFileSync(join(findPackageRoot(), 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}
