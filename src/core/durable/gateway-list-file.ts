// Owns client/current_port_server.txt: the addresses of the gateways serving this data dir, one per line,
// the most recently started first. Clients and banks with no --gateway read it; a gateway adds its line at start
// and removes it at an orderly stop, unless it is the last line: a list left empty would send clients to the
// default address, while the last gateway's address is where it comes back (and where `sync --watch` waits for
// it; on the files store, whose one gateway per data dir this always is). A gateway killed never removes its own: its line stays (its restart on the
// same port moves it back to the top), and the list is bounded, so the oldest stale lines fall off the end.
import { readFile } from "node:fs/promises";
import { gatewayAddressesMax, validateAddress } from "../domain/validate.js";
import { withFileLock } from "./file-lock.js";
import { writeFileAtomic } from "./files.js";

/** Larger than any list this module writes (16 lines of at most ~60 characters): a bigger file is not ours. */
const fileBytesMax = 64 * 1024;

export interface GatewayListText {
  /** Valid addresses in file order, duplicates dropped, at most gatewayAddressesMax. */
  addresses: string[];
  /** 1-based numbers of the lines that were neither blank nor an address (skipped). */
  badLines: number[];
}

/** Parses the file's text: blank lines and surrounding spaces are skipped, as is a line that is not host:port. */
export function parseGatewayList(text: string): GatewayListText {
  const addresses: string[] = [];
  const badLines: number[] = [];
  text
    .slice(0, fileBytesMax)
    .split(/\r?\n/)
    .forEach((raw, index) => {
      const line = raw.trim();
      if (line === "") return;
      try {
        const address = validateAddress(line);
        if (!addresses.includes(address) && addresses.length < gatewayAddressesMax) addresses.push(address);
      } catch {
        badLines.push(index + 1);
      }
    });
  return { addresses, badLines };
}

export function formatGatewayList(addresses: readonly string[]): string {
  return addresses.length === 0 ? "" : `${addresses.join("\n")}\n`;
}

/** The list with `address` first (moved there if present) and the oldest beyond the bound dropped. */
export function withGatewayFirst(addresses: readonly string[], address: string): string[] {
  return [address, ...addresses.filter((other) => other !== address)].slice(0, gatewayAddressesMax);
}

/** The addresses in the file (none when it is missing). */
export async function readGatewayList(path: string): Promise<string[]> {
  return parseGatewayList(await readText(path)).addresses;
}

/**
 * Puts this gateway's address first, under the file's lock. `alone`: replace the list with it (a gateway on the
 * files is the data dir's only one, so any other line is an earlier start's).
 */
export async function addGatewayLine(path: string, address: string, options: { alone: boolean }): Promise<void> {
  await withFileLock(path, async () => {
    const current = options.alone ? [] : parseGatewayList(await readText(path)).addresses;
    await writeFileAtomic(path, formatGatewayList(withGatewayFirst(current, address)));
  });
}

/** Removes this gateway's address (an orderly stop) unless it is the only one, under the file's lock. */
export async function removeGatewayLine(path: string, address: string): Promise<void> {
  await withFileLock(path, async () => {
    const current = parseGatewayList(await readText(path)).addresses;
    if (!current.includes(address) || current.length === 1) return;
    await writeFileAtomic(path, formatGatewayList(current.filter((other) => other !== address)));
  });
}

async function readText(path: string): Promise<string> {
  return readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw error;
  });
}
