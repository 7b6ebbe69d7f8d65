import { isIP } from 'node:net';

/** Which Redis deployment holds the rate-limit counters (DESIGN.md, "Scale-out"). */
export type RedisTopology = 'single' | 'sentinel' | 'cluster';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Credentials for the Redis servers themselves (Sentinel and Cluster; REDIS_URL carries its own). */
interface RedisCredentials {
  readonly username: string | undefined;
  readonly password: string | undefined;
}

export type RedisTarget =
  | { readonly topology: 'single'; readonly url: string }
  | (RedisCredentials & {
      readonly topology: 'sentinel';
      readonly sentinels: readonly HostPort[];
      /** The master name the sentinels monitor (`sentinel monitor <name> ...`). */
      readonly master: string;
      readonly sentinelPassword: string | undefined;
    })
  | (RedisCredentials & { readonly topology: 'cluster'; readonly nodes: readonly HostPort[] });

/** The REDIS_* variables, as read (blank is unset). */
export interface RedisVariables {
  readonly REDIS_URL: string | undefined;
  readonly REDIS_SENTINELS: string | undefined;
  readonly REDIS_SENTINEL_MASTER: string | undefined;
  readonly REDIS_CLUSTER_NODES: string | undefined;
  readonly REDIS_USERNAME: string | undefined;
  readonly REDIS_PASSWORD: string | undefined;
  readonly REDIS_SENTINEL_PASSWORD: string | undefined;
}

/**
 * REDIS_URL, REDIS_SENTINELS (+ REDIS_SENTINEL_MASTER) or REDIS_CLUSTER_NODES: at most one of them.
 * None: no Redis (limits per process). What is wrong goes to `problems`, never a password.
 */
export function parseRedisTarget(vars: RedisVariables, problems: string[]): RedisTarget | undefined {
  const chosen = (['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const).filter((name) => vars[name] !== undefined);
  if (chosen.length > 1) {
    problems.push(`set at most one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES (got ${chosen.join(' and ')})`);
    return undefined;
  }
  if (vars.REDIS_SENTINELS === undefined) {
    for (const name of ['REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD'] as const) {
      if (vars[name] !== undefined) problems.push(`${name} needs REDIS_SENTINELS`);
    }
  }
  const credentials = { username: vars.REDIS_USERNAME, password: vars.REDIS_PASSWORD };

  if (vars.REDIS_URL !== undefined) {
    if (!/^rediss?:\/\//.test(vars.REDIS_URL)) {
      problems.push('REDIS_URL must be a redis:// or rediss:// URL');
      return undefined;
    }
    return { topology: 'single', url: vars.REDIS_URL };
  }
  if (vars.REDIS_SENTINELS !== undefined) {
    const sentinels = parseHostPorts('REDIS_SENTINELS', vars.REDIS_SENTINELS, problems);
    const master = vars.REDIS_SENTINEL_MASTER;
    if (master === undefined) problems.push('REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the master name the sentinels monitor');
    else if (/[\s,]/.test(master)) problems.push(`REDIS_SENTINEL_MASTER must be one name without spaces or commas (got "${master}")`);
    if (sentinels === undefined || master === undefined) return undefined;
    return { topology: 'sentinel', sentinels, master, sentinelPassword: vars.REDIS_SENTINEL_PASSWORD, ...credentials };
  }
  if (vars.REDIS_CLUSTER_NODES !== undefined) {
    const nodes = parseHostPorts('REDIS_CLUSTER_NODES', vars.REDIS_CLUSTER_NODES, problems);
    return nodes === undefined ? undefined : { topology: 'cluster', nodes, ...credentials };
  }
  return undefined;
}

/**
 * The hash tag of a key prefix (Redis Cluster specification, "Hash tags"): the text between the
 * first `{` and the next `}`, when not empty. On a cluster a prefix with one would put every
 * counter in one slot, on one node: the opposite of what a cluster is for.
 */
export function hashTagOf(prefix: string): string | undefined {
  const open = prefix.indexOf('{');
  const close = open < 0 ? -1 : prefix.indexOf('}', open + 1);
  return close > open + 1 ? prefix.slice(open + 1, close) : undefined;
}

/**
 * The cluster slot of `key` (Redis Cluster specification, "Key distribution model"): CRC16
 * (XMODEM) of its hash tag, or of the whole key without one, modulo 16384.
 */
export function keySlot(key: string): number {
  let crc = 0;
  for (const byte of Buffer.from(hashTagOf(key) ?? key)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** `host:port,host:port,...`; an IPv6 address in brackets (`[::1]:26379`). */
function parseHostPorts(name: string, text: string, problems: string[]): HostPort[] | undefined {
  const entries = text.split(',').map((entry) => entry.trim());
  const parsed = entries.map(parseHostPort);
  // An entry with an @ may be a URL with a password in it: named by position only.
  const bad = entries.flatMap((entry, i) => (parsed[i] !== undefined ? [] : [entry.includes('@') || entry === '' ? `entry ${i + 1}` : `"${entry}"`]));
  if (bad.length > 0) {
    problems.push(`${name} must be a comma-separated list of host:port with ports from 1 to 65535 (bad: ${bad.join(', ')})`);
    return undefined;
  }
  return parsed as HostPort[];
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function parseHostPort(entry: string): HostPort | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(entry);
  if (match === null) return undefined;
  const [, ipv6, host = '', portText = ''] = match;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  if (ipv6 !== undefined) return isIP(ipv6) === 6 ? { host: ipv6, port } : undefined;
  return isIP(host) === 4 || HOSTNAME.test(host) ? { host, port } : undefined;
}
