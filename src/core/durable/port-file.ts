// Owns server/current_port_server.txt: the next port a bank takes when none is given (the seed's scheme).
import { readFile } from "node:fs/promises";
import { withFileLock } from "./file-lock.js";
import { writeFileAtomic } from "./files.js";

export const firstBankPort = 50051;

/** Takes the next port from the file and advances it, under the file's lock. */
export async function takeNextPort(path: string): Promise<number> {
  return withFileLock(path, async () => {
    const text = (await readFile(path, "utf8")).trim();
    const port = text === "" ? firstBankPort : Number(text);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`${path}: expected a port number, found ${JSON.stringify(text.slice(0, 20))}`);
    }
    const next = port >= 65535 ? firstBankPort : port + 1;
    await writeFileAtomic(path, `${next}\n`);
    return port;
  });
}
