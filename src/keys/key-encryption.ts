import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface EncryptedSecret {
  readonly ciphertext: string;
  /** Which key-encryption key sealed it: a fingerprint, not the key. */
  readonly kekId: string;
}

/**
 * The key-encryption-key ring from KEY_ENCRYPTION_KEYS: the first key encrypts, every key decrypts,
 * so an operator can add a new key in front, re-encrypt, then drop the old one.
 */
export interface KeyRing {
  encrypt(plaintext: Buffer, associatedData: string): EncryptedSecret;
  /** Throws KeyDecryptionError when no key in the ring opens it. */
  decrypt(secret: EncryptedSecret, associatedData: string): Buffer;
  /** A 32-byte key for `purpose` from each key of the ring (HKDF-SHA256), the encrypting one first. */
  derive(purpose: string): Buffer[];
}

export class KeyDecryptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyDecryptionError';
  }
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

export function kekFingerprint(key: Buffer): string {
  return createHash('sha256').update('tessera-kek:').update(key).digest('hex').slice(0, 16);
}

/** AES-256-GCM; the associated data (the key id) binds a ciphertext to its row, so rows cannot be swapped. */
export function createKeyRing(keys: readonly Buffer[]): KeyRing {
  const [primary] = keys;
  if (primary === undefined) throw new Error('the key-encryption-key ring is empty');
  const byId = new Map(keys.map((key) => [kekFingerprint(key), key]));
  return {
    encrypt(plaintext, associatedData) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', primary, iv);
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return {
        ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'),
        kekId: kekFingerprint(primary),
      };
    },
    derive(purpose) {
      return keys.map((key) => Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `tessera ${purpose}`, 32)));
    },
    decrypt(secret, associatedData) {
      const key = byId.get(secret.kekId);
      if (key === undefined) {
        throw new KeyDecryptionError(
          `no key in KEY_ENCRYPTION_KEYS (embedded: DATA_DIR/key-encryption-key) matches the one (${secret.kekId}) that encrypted signing key ${associatedData}`,
        );
      }
      const raw = Buffer.from(secret.ciphertext, 'base64');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
        decipher.setAAD(Buffer.from(associatedData, 'utf8'));
        decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
        return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
      } catch {
        throw new KeyDecryptionError(`signing key ${associatedData} could not be decrypted: its ciphertext is damaged`);
      }
    },
  };
}

/**
 * Embedded mode only: the key-encryption key lives in DATA_DIR (mode 0600), created on first start.
 * With DATABASE_URL, KEY_ENCRYPTION_KEYS is required instead (src/config.ts).
 */
export async function loadOrCreateEmbeddedKek(dataDir: string): Promise<{ key: Buffer; created: boolean }> {
  const path = embeddedKekPath(dataDir);
  try {
    const key = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64');
    if (key.length !== 32) throw new Error(`${path} does not hold a 32-byte base64 key`);
    return { key, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' }).catch(async (error) => {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return; // another process made it first
    throw error;
  });
  await chmod(path, 0o600);
  return { key: (await loadOrCreateEmbeddedKek(dataDir)).key, created: true };
}

export function embeddedKekPath(dataDir: string): string {
  return join(dataDir, 'key-encryption-key');
}
