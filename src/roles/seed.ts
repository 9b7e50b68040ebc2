// Prepares a data dir: the seed's files from fixtures/ when absent, and any missing certificates.
import { copyFile, mkdir, access } from "node:fs/promises";
import { dirname, join } from "node:path";
import { dataPaths } from "../core/durable/paths.js";
import { banksOf, readAccountsCsv } from "../core/bank/store/file/accounts-csv.js";
import { issueCertificates } from "../core/transport/certificates.js";
import { fixturesDir } from "../package-paths.js";

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Copies fixtures/server/* into the data dir when its accounts file is missing; returns whether it did. */
export async function seedDataDir(dataDir: string): Promise<boolean> {
  const paths = dataPaths(dataDir);
  if (await exists(paths.accountsCsv)) return false;
  await mkdir(dirname(paths.accountsCsv), { recursive: true });
  await copyFile(join(fixturesDir, "server", "dummydata.csv"), paths.accountsCsv);
  if (!(await exists(paths.bankPortTxt)))
    await copyFile(join(fixturesDir, "server", "current_port_server.txt"), paths.bankPortTxt);
  return true;
}

export async function banksInDataDir(dataDir: string): Promise<string[]> {
  return banksOf(await readAccountsCsv(dataPaths(dataDir).accountsCsv));
}

export async function ensureCertificates(
  dataDir: string,
  banks: readonly string[],
  gatewayHosts: readonly string[] = [],
  force = false,
): Promise<string[]> {
  return issueCertificates({ certificateDir: dataPaths(dataDir).certificateDir, banks, gatewayHosts, force });
}
