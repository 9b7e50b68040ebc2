// Atomic, durable file writes: temp file, fsync, rename, fsync the directory.
import { open, rename, mkdir, rm } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import { crashPoint } from "./crash.js";

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `path` with `data` so that a crash at any moment leaves either the old or the new content.
 * `crashName` names the crash point between writing the temp file and renaming it.
 */
export async function writeFileAtomic(path: string, data: string, options: { mode?: number; crashName?: string } = {}): Promise<void> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true });
  const temp = join(directory, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "w", options.mode ?? 0o644);
  try {
    await handle.writeFile(data, "utf8");
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  if (options.crashName !== undefined) crashPoint(options.crashName);
  await rename(temp, path);
  await fsyncDirectory(directory);
}

/** Appends lines and fsyncs them before returning, for append-only logs. */
export async function appendDurable(path: string, text: string): Promise<void> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true });
  const handle = await open(path, "a", 0o644);
  try {
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
}
