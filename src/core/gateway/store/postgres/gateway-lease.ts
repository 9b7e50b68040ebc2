// A gateway's lease on its payments, for several gateways sharing one PostgreSQL (the gateways table, migration
// 2). Each gateway process takes a new id at start and renews its lease every `renewEveryMs`, for `leaseMs`
// from the database's clock. The lease is what lets the others wait for it: a payment row names its owner,
// and only a gateway whose lease has expired has its unfinished payments claimed by another
// (PostgresCoordinatorStore.claimOrphans).
//
// An expired lease is never renewed: by then another gateway may have claimed some of its payments, and the
// old owner's memory of them is stale. renew() then rejects with LeaseLostError and the gateway must stop
// driving payments (it exits; restarted, it is a new gateway with a new id). Its writes are refused anyway:
// the store's UPDATE requires `owner = me` and a live lease, so a gateway paused past its lease that wakes up
// and writes before it notices cannot overwrite a newer decision.
//
// The process also watches its lease on its own clock: if no renewal has succeeded for `leaseMs` (the database
// unreachable, the process starved), it counts the lease as lost without waiting to hear it from the server.
// The local deadline is measured from when the last successful renewal was *sent*, which is no later than
// the server's, so the local view never outlives the database's.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { assert } from "../../../domain/assert.js";
import type { Database } from "../../../durable/postgres/database.js";

export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
}

export interface LeaseOptions {
  database: Database;
  /** The gateway's schema (checked by checkedSchemaName), migrated. */
  schema: string;
  gatewayId: string;
  leaseMs: number;
  nowMs?: () => number;
}

/** bounds of the lease flags: a lease shorter than a few round trips would be lost under load. */
export const leaseMsMin = 500;
export const leaseMsMax = 600_000;

/** A gateway id: unique per process start, readable in logs (`gw-host-pid-random`). */
export function newGatewayId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9-]/g, "")
    .slice(0, 24);
  return `gw-${host === "" ? "host" : host}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

export class GatewayLease {
  readonly gatewayId: string;
  readonly leaseMs: number;
  readonly #database: Database;
  readonly #schema: string;
  readonly #nowMs: () => number;
  /** When the last renewal that succeeded was sent (local clock): the lease holds until this + leaseMs at most. */
  #renewSentAtMs: number;
  #lost: LeaseLostError | null = null;

  private constructor(options: LeaseOptions, sentAtMs: number) {
    this.gatewayId = options.gatewayId;
    this.leaseMs = options.leaseMs;
    this.#database = options.database;
    this.#schema = options.schema;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#renewSentAtMs = sentAtMs;
  }

  /** Takes the lease of a new gateway id; refuses an id already taken (another process, or an earlier start). */
  static async acquire(options: LeaseOptions): Promise<GatewayLease> {
    assert(
      Number.isSafeInteger(options.leaseMs) && options.leaseMs >= leaseMsMin && options.leaseMs <= leaseMsMax,
      `the lease must be ${leaseMsMin}..${leaseMsMax} ms`,
    );
    const nowMs = options.nowMs ?? Date.now;
    const sentAtMs = nowMs();
    const result = await options.database.query(
      `INSERT INTO ${options.schema}.gateways (gateway_id, lease_expires_at)
       VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond')
       ON CONFLICT (gateway_id) DO NOTHING`,
      [options.gatewayId, options.leaseMs],
    );
    if (result.rowCount !== 1)
      throw new LeaseLostError(
        `gateway id ${options.gatewayId} is already taken in ${options.schema}.gateways: give each gateway its own`,
      );
    return new GatewayLease(options, sentAtMs);
  }

  /** The lease was lost (renewal refused, or not renewed in time): nothing may be driven any more. */
  get lost(): LeaseLostError | null {
    if (this.#lost === null && this.#nowMs() >= this.#renewSentAtMs + this.leaseMs)
      this.#lost = new LeaseLostError(
        `gateway ${this.gatewayId}: no renewal of its lease succeeded for ${this.leaseMs} ms; its payments may be another's now`,
      );
    return this.#lost;
  }

  /** Extends the lease by leaseMs from now (the database's clock); rejects with LeaseLostError if it had expired. */
  async renew(): Promise<void> {
    const lost = this.lost;
    if (lost !== null) throw lost;
    const sentAtMs = this.#nowMs();
    const result = await this.#database.query(
      `UPDATE ${this.#schema}.gateways SET lease_expires_at = clock_timestamp() + $2 * interval '1 millisecond'
       WHERE gateway_id = $1 AND lease_expires_at > clock_timestamp()`,
      [this.gatewayId, this.leaseMs],
    );
    if (result.rowCount !== 1) {
      this.#lost = new LeaseLostError(
        `gateway ${this.gatewayId}: its lease had expired when it tried to renew it; another gateway may drive its payments`,
      );
      throw this.#lost;
    }
    this.#renewSentAtMs = Math.max(this.#renewSentAtMs, sentAtMs);
  }

  /** Records the address clients and banks reach this gateway at (for `paynet status` and the operators). */
  async setAddress(address: string): Promise<void> {
    await this.#database.query(`UPDATE ${this.#schema}.gateways SET address = $2 WHERE gateway_id = $1`, [
      this.gatewayId,
      address,
    ]);
  }

  /**
   * Removes the rows of gateways whose lease ended more than `expiredForMs` ago and that own no unfinished
   * payment (each start adds a row: without this the table grows by one per restart, for good). A gateway
   * whose row is gone can never renew: its renewal finds no row, as it would find an expired one.
   */
  async forgetExpired(expiredForMs: number): Promise<number> {
    const result = await this.#database.query(
      `DELETE FROM ${this.#schema}.gateways g
       WHERE g.lease_expires_at < clock_timestamp() - $1 * interval '1 millisecond'
         AND NOT EXISTS (SELECT 1 FROM ${this.#schema}.payments p WHERE NOT p.finished AND p.owner = g.gateway_id)`,
      [expiredForMs],
    );
    return result.rowCount ?? 0;
  }

  /**
   * Ends the lease now, for an orderly stop once this gateway writes nothing more: its unfinished payments are
   * claimed by another gateway at its next look instead of after the lease. The row stays (an owner's name).
   */
  async release(): Promise<void> {
    this.#lost ??= new LeaseLostError(`gateway ${this.gatewayId}: released its lease`);
    await this.#database.query(
      `UPDATE ${this.#schema}.gateways SET lease_expires_at = clock_timestamp() WHERE gateway_id = $1`,
      [this.gatewayId],
    );
  }
}
