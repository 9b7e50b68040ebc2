// Every payment in the gateway's table, read in one snapshot: for `paynet verify` and `paynet bench`, which
// check what the gateway logged against what the banks applied once the network is quiet. Not on any
// payment's path (the coordinator reads single rows through the store).
import type { Database } from "../../../durable/postgres/database.js";
import type { PaymentRecord } from "../../../domain/payment.js";
import { gatewaySchemaDefault } from "./migrations.js";
import { paymentColumns, storedFromRow, type PaymentRow } from "./payment-rows.js";

export async function readAllPayments(database: Database, schema = gatewaySchemaDefault): Promise<PaymentRecord[]> {
  const result = await database.query<PaymentRow>(
    `SELECT ${paymentColumns} FROM ${schema}.payments ORDER BY payment_id`,
  );
  return result.rows.map((row) => storedFromRow(row).record);
}
