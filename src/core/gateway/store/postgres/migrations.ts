// The gateway's schema in PostgreSQL (applied by durable/postgres/database.ts migrate(), in order, once each).
//
// payments: one row per payment id ever recorded, kept for good (no archive: a repeated id is answered from
// here however old). The primary key is the idempotency decision (INSERT … ON CONFLICT DO NOTHING). Money in
// bigint minor units; times in bigint milliseconds. `version` counts the changes written to the row (1 when
// created): every UPDATE is a compare-and-set on it. The unfinished payments, a handful among millions,
// are found through a partial index.
//
// payments_forward_only: a trigger that refuses, whoever writes, an update that changes a payment's details,
// moves its state backwards, changes a decision, unfinishes it or does not raise its version. The store
// already checks every change (domain/payment.ts advancedRecord) and guards its UPDATE; the trigger makes a
// second gateway with another build, or a hand-written statement, obey the same rule.
//
// gateways (migration 2): one row per gateway process (a new id per start), with a lease it renews. A payment
// row's `owner` is the gateway driving it; a gateway writes a payment's progress only while it owns the row
// and its lease is live (both checked in the UPDATE itself), and live gateways claim the unfinished payments
// of owners whose lease has expired (gateway/store/postgres/gateway-lease.ts). Lease times are the database's
// clock, so the gateways' clocks need not agree.
//
// Migration 3 adds each leg's vote and acknowledgement (domain/payment.ts PaymentLeg): three columns per role,
// since a payment has one payer leg and one payee leg, all null in a row written before (its legs are not
// known) and until known. The forward-only trigger is replaced by one that also keeps what a leg recorded.
//
// payment_counts: how many payments are in each bucket of PaymentCounts, kept by the store in the same
// transaction as the rows it changes, so counts() reads at most stripes × 5 rows instead of scanning the
// table. Split into stripes (each store picks one at open) so that gateways sharing the database do not all
// queue on the same five rows: a row's lock is held until its transaction commits.
import type { Migration } from "../../../durable/postgres/database.js";

export const gatewaySchemaDefault = "paynet_gateway";

/** Stripes of payment_counts; a store adds to one of them, counts() sums them all. */
export const countStripes = 16;

export const gatewayMigrations: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: "payments, the forward-only trigger, the unfinished index and the counts",
    sql: `
CREATE TABLE payments (
  payment_id text PRIMARY KEY CHECK (payment_id <> ''),
  from_user text NOT NULL,
  from_bank text NOT NULL,
  to_user text NOT NULL,
  to_bank text NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
  state text NOT NULL CHECK (state IN ('preparing', 'prepared', 'committed', 'aborted')),
  reason text,
  reason_message text,
  finished boolean NOT NULL,
  balance_after_minor bigint,
  created_at_ms bigint NOT NULL,
  decided_at_ms bigint,
  finished_at_ms bigint,
  version integer NOT NULL CHECK (version >= 1),
  CHECK (NOT finished OR state IN ('committed', 'aborted'))
);

CREATE INDEX payments_unfinished ON payments (created_at_ms) WHERE NOT finished;

CREATE FUNCTION payment_state_rank(state text) RETURNS integer LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT CASE state WHEN 'preparing' THEN 0 WHEN 'prepared' THEN 1 ELSE 2 END
$$;

-- Names in a trigger's body resolve through the writer's search_path: the ranks are spelled out here.
CREATE FUNCTION payments_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_rank integer := CASE OLD.state WHEN 'preparing' THEN 0 WHEN 'prepared' THEN 1 ELSE 2 END;
  new_rank integer := CASE NEW.state WHEN 'preparing' THEN 0 WHEN 'prepared' THEN 1 ELSE 2 END;
BEGIN
  IF NEW.payment_id <> OLD.payment_id OR NEW.from_user <> OLD.from_user OR NEW.from_bank <> OLD.from_bank
     OR NEW.to_user <> OLD.to_user OR NEW.to_bank <> OLD.to_bank OR NEW.amount_minor <> OLD.amount_minor
     OR NEW.created_at_ms <> OLD.created_at_ms THEN
    RAISE EXCEPTION 'payment %: its details may not change', OLD.payment_id USING ERRCODE = 'check_violation';
  END IF;
  IF new_rank < old_rank OR (old_rank = 2 AND NEW.state <> OLD.state) THEN
    RAISE EXCEPTION 'payment %: may not move from % to %', OLD.payment_id, OLD.state, NEW.state
      USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.finished AND NOT NEW.finished THEN
    RAISE EXCEPTION 'payment %: may not be unfinished', OLD.payment_id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.version <= OLD.version THEN
    RAISE EXCEPTION 'payment %: version % does not follow %', OLD.payment_id, NEW.version, OLD.version
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER payments_forward_only BEFORE UPDATE ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_forward_only();

CREATE TABLE payment_counts (
  stripe smallint NOT NULL CHECK (stripe >= 0 AND stripe < ${countStripes}),
  bucket text NOT NULL CHECK (bucket IN ('preparing', 'committing', 'aborting', 'committed', 'aborted')),
  -- A stripe may go below zero (one gateway begins a payment, another moves it on); their sum may not.
  payments bigint NOT NULL,
  PRIMARY KEY (stripe, bucket)
);
`,
  },
  {
    version: 2,
    name: "gateways and their leases; each payment's owner",
    sql: `
CREATE TABLE gateways (
  gateway_id text PRIMARY KEY CHECK (gateway_id <> ''),
  address text NOT NULL DEFAULT '',
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  lease_expires_at timestamptz NOT NULL
);

-- NULL for the rows of a gateway of an earlier build: no live lease, so the first gateway to look takes them.
ALTER TABLE payments ADD COLUMN owner text;

CREATE INDEX payments_unfinished_owner ON payments (owner) WHERE NOT finished;
`,
  },
  {
    version: 3,
    name: "each leg's vote and acknowledgement, kept forward-only",
    // The new columns are null in every existing row, so their checks hold there: NOT VALID spares a table
    // kept for good a scan under an exclusive lock at a gateway's start. New and updated rows are checked.
    sql: `
ALTER TABLE payments
  ADD COLUMN payer_vote text,
  ADD COLUMN payer_voted_at_ms bigint,
  ADD COLUMN payer_acked_at_ms bigint,
  ADD COLUMN payee_vote text,
  ADD COLUMN payee_voted_at_ms bigint,
  ADD COLUMN payee_acked_at_ms bigint;

ALTER TABLE payments
  ADD CONSTRAINT payments_payer_vote CHECK (payer_vote IN ('yes', 'no', 'unanswered')) NOT VALID,
  ADD CONSTRAINT payments_payee_vote CHECK (payee_vote IN ('yes', 'no', 'unanswered')) NOT VALID,
  ADD CONSTRAINT payments_payer_vote_timed CHECK ((payer_vote IS NULL) = (payer_voted_at_ms IS NULL)) NOT VALID,
  ADD CONSTRAINT payments_payee_vote_timed CHECK ((payee_vote IS NULL) = (payee_voted_at_ms IS NULL)) NOT VALID;

-- Migration 1's rules, and a leg's recorded vote (with its time) and acknowledgement time never change.
CREATE OR REPLACE FUNCTION payments_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_rank integer := CASE OLD.state WHEN 'preparing' THEN 0 WHEN 'prepared' THEN 1 ELSE 2 END;
  new_rank integer := CASE NEW.state WHEN 'preparing' THEN 0 WHEN 'prepared' THEN 1 ELSE 2 END;
BEGIN
  IF NEW.payment_id <> OLD.payment_id OR NEW.from_user <> OLD.from_user OR NEW.from_bank <> OLD.from_bank
     OR NEW.to_user <> OLD.to_user OR NEW.to_bank <> OLD.to_bank OR NEW.amount_minor <> OLD.amount_minor
     OR NEW.created_at_ms <> OLD.created_at_ms THEN
    RAISE EXCEPTION 'payment %: its details may not change', OLD.payment_id USING ERRCODE = 'check_violation';
  END IF;
  IF new_rank < old_rank OR (old_rank = 2 AND NEW.state <> OLD.state) THEN
    RAISE EXCEPTION 'payment %: may not move from % to %', OLD.payment_id, OLD.state, NEW.state
      USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.finished AND NOT NEW.finished THEN
    RAISE EXCEPTION 'payment %: may not be unfinished', OLD.payment_id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.version <= OLD.version THEN
    RAISE EXCEPTION 'payment %: version % does not follow %', OLD.payment_id, NEW.version, OLD.version
      USING ERRCODE = 'check_violation';
  END IF;
  IF (OLD.payer_vote IS NOT NULL AND (NEW.payer_vote IS DISTINCT FROM OLD.payer_vote
        OR NEW.payer_voted_at_ms IS DISTINCT FROM OLD.payer_voted_at_ms))
     OR (OLD.payee_vote IS NOT NULL AND (NEW.payee_vote IS DISTINCT FROM OLD.payee_vote
        OR NEW.payee_voted_at_ms IS DISTINCT FROM OLD.payee_voted_at_ms))
     OR (OLD.payer_acked_at_ms IS NOT NULL AND NEW.payer_acked_at_ms IS DISTINCT FROM OLD.payer_acked_at_ms)
     OR (OLD.payee_acked_at_ms IS NOT NULL AND NEW.payee_acked_at_ms IS DISTINCT FROM OLD.payee_acked_at_ms) THEN
    RAISE EXCEPTION 'payment %: a leg''s recorded vote or acknowledgement may not change', OLD.payment_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
`,
  },
]);
