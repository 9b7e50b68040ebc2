// The gateways' session key: 32 random bytes in certificate/gateway_session.key (mode 0600), shared by every
// gateway of a network, which signs and checks login tokens with it (gateway/sessions.ts). It is made with
// the certificates (`paynet certs`) or by the first gateway that starts without it, and copied with the
// certificates to gateways on other machines.
//
// Two gateways starting at once on one data dir must end up with one key, so a new key never replaces a
// file: it is written to a temp file, fsynced, then hard-linked to the final name, which fails with EEXIST
// when another process got there first; the loser then reads the winner's key. The final name only ever
// appears with its whole, fsynced content (as with writeFileAtomic's rename, which would instead clobber).
import { randomBytes } from "node:crypto";
import { link, mkdir, open, rm, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { nodeDisk } from "../durable/disk.js";
import { CertificateError } from "./certificate-error.js";

export const sessionKeyBytes = 32;

export function sessionKeyPath(certificateDir: string): string {
  return join(certificateDir, "gateway_session.key");
}

/** The session key of `certificateDir`, created when missing; a file of the wrong size or mode is refused. */
export async function ensureSessionKey(certificateDir: string): Promise<{ key: Buffer; created: boolean }> {
  const path = sessionKeyPath(certificateDir);
  const existing = await readSessionKey(path);
  if (existing !== null) return { key: existing, created: false };
  const created = await linkNewSessionKey(path);
  const key = await readSessionKey(path);
  if (key === null) throw new CertificateError(`session key ${path} vanished just after it was created`);
  return { key, created };
}

/** The key in `path`, or null when there is no such file. */
export async function readSessionKey(path: string): Promise<Buffer | null> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CertificateError(`cannot read session key ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    // fstat of the open file: the checks are about the bytes then read, not about whatever the name meant before.
    const stats = await handle.stat();
    if (!stats.isFile()) throw new CertificateError(`session key ${path} is not a regular file`);
    if ((stats.mode & 0o077) !== 0)
      throw new CertificateError(
        `session key ${path} is readable or writable by others (mode ${(stats.mode & 0o777).toString(8)}); run chmod 600 on it`,
      );
    if (stats.size !== sessionKeyBytes) throw wrongSize(path, stats.size);
    const key = await handle.readFile();
    if (key.length !== sessionKeyBytes) throw wrongSize(path, key.length);
    return key;
  } finally {
    await handle.close();
  }
}

function wrongSize(path: string, sizeBytes: number): CertificateError {
  return new CertificateError(
    `session key ${path} holds ${sizeBytes} bytes, not ${sessionKeyBytes}; copy the key of the network's other gateways over it, or remove it and run \`paynet certs\``,
  );
}

/** Puts a new random key at `path` unless a file is already there; whether this call's key is the one there. */
export async function linkNewSessionKey(path: string): Promise<boolean> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  // Named as writeFileAtomic names its temp files, so that a leftover is recognised as one.
  const temp = join(directory, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "wx", 0o600);
  try {
    try {
      await handle.writeFile(randomBytes(sessionKeyBytes));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    await rm(temp, { force: true });
    await nodeDisk.syncDirectory(directory);
  }
}
