// The gateway's PostgreSQL adapter: the store, its schema's migrations, and what its callers handle.
export {
  attemptsMax,
  CoordinatorStoreStoppedError,
  OwnershipLostError,
  PostgresCoordinatorStore,
  type ClaimedRecord,
  type PostgresCoordinatorStoreOptions,
  type TransactionStep,
} from "./postgres-coordinator-store.js";
export { countStripes, gatewayMigrations, gatewaySchemaDefault } from "./migrations.js";
export { PaymentInputError, PaymentRowError } from "./payment-rows.js";
export { unfinishedQuery } from "./payment-statements.js";
export { GatewayLease, LeaseLostError, leaseMsMax, leaseMsMin, newGatewayId } from "./gateway-lease.js";
