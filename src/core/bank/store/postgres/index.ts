// The bank's ledger store on PostgreSQL: what the roles and `paynet db export` use.
export { PostgresLedgerStore, type PostgresLedgerStoreOptions } from "./postgres-ledger-store.js";
export { bankMigrations, bankSchemaName } from "./bank-schema.js";
export { exportBankAccounts } from "./bank-accounts.js";
export { LedgerWriteRefused } from "./ledger-rows.js";
export { SharedLedger, type SharedLedgerOptions } from "./shared-ledger.js";
