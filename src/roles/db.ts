// `paynet db`: the PostgreSQL store's maintenance commands. `migrate` applies the schema migrations of the
// gateway and of each bank (each process also does so at start; this lets an operator do it ahead of a
// rollout), `export --bank B` writes a bank's accounts in the seed's CSV format (server/dummydata.csv's rows).
import { banksOf, readAccountsCsv } from "../core/bank/store/file/accounts-csv.js";
import { bankMigrations, bankSchemaName, exportBankAccounts } from "../core/bank/store/postgres/index.js";
import { gatewayMigrations, gatewaySchemaDefault } from "../core/gateway/store/postgres/index.js";
import { DatabaseError, migrate, openDatabase } from "../core/durable/postgres/database.js";
import { dataPaths } from "../core/durable/paths.js";
import { validateBankName } from "../core/domain/validate.js";
import type { StoreChoice } from "./store-option.js";

export interface DbFlags {
  dataDir: string;
  store: StoreChoice;
}

function postgresUrl(store: StoreChoice): string {
  if (store.kind !== "postgres")
    throw new DatabaseError("paynet db works on a PostgreSQL store: give --store postgres://USER@HOST:PORT/DB");
  return store.url;
}

/** Migrates the gateway's schema and each bank's (the banks of server/dummydata.csv, or `banks`); prints what it applied. */
export async function runDbMigrate(flags: DbFlags & { banks: string[] | undefined }): Promise<number> {
  const database = openDatabase({ url: postgresUrl(flags.store), applicationName: "paynet-db" });
  try {
    const banks = flags.banks ?? banksOf(await readAccountsCsv(dataPaths(flags.dataDir).accountsCsv));
    const targets: Array<[string, string, typeof gatewayMigrations]> = [
      ["gateway", gatewaySchemaDefault, gatewayMigrations],
      ...banks.map((bank): [string, string, typeof bankMigrations] => [
        `bank ${validateBankName(bank)}`,
        bankSchemaName(bank),
        bankMigrations,
      ]),
    ];
    for (const [who, schema, migrations] of targets) {
      const applied = await migrate(database, schema, migrations);
      process.stdout.write(
        `${who}: schema ${schema} at version ${migrations.length}${applied.length > 0 ? ` (applied ${applied.join(", ")})` : " (nothing to apply)"}\n`,
      );
    }
    return 0;
  } finally {
    await database.end();
  }
}

/** Writes bank `bank`'s accounts, as the seed's CSV (header and rows), to stdout. */
export async function runDbExport(flags: DbFlags & { bank: string }): Promise<number> {
  const database = openDatabase({ url: postgresUrl(flags.store), applicationName: "paynet-db" });
  try {
    process.stdout.write(await exportBankAccounts(database, validateBankName(flags.bank)));
    return 0;
  } finally {
    await database.end();
  }
}
