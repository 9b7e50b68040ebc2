// The legs a coordinator would record with a schedule's change (domain/payment.ts PaymentLeg), drawing nothing
// from the schedule's PRNG (so that a seed runs the same schedule as before legs were kept): votes with a
// decision, acknowledgements with `finished`; none for a same-bank payment.
import { legRoles, type PaymentLeg, type PaymentRecord } from "../domain/payment.js";

/** The votes of a decision: both yes for a commit; the payee's no for an abort. */
export function decisionLegs(record: PaymentRecord, commit: boolean, nowMs: number): PaymentLeg[] | undefined {
  if (record.fromBank === record.toBank) return undefined;
  return [
    { role: "payer", vote: "yes", votedAtMs: nowMs, ackedAtMs: null },
    { role: "payee", vote: commit ? "yes" : "no", votedAtMs: nowMs, ackedAtMs: null },
  ];
}

/** The legs of a finished payment: the votes it recorded, and both banks' acknowledgements now. */
export function finishedLegs(record: PaymentRecord, nowMs: number): PaymentLeg[] | undefined {
  if (record.fromBank === record.toBank) return undefined;
  return legRoles.map((role) => {
    const known = record.legs.find((leg) => leg.role === role);
    return { role, vote: known?.vote ?? null, votedAtMs: known?.votedAtMs ?? null, ackedAtMs: nowMs };
  });
}
