// `paynet payment ID`'s timeline: what happened to one payment, in order, as the gateway recorded it (begun,
// each bank's vote, the decision, each bank's acknowledgement, finished), each event with its time and the
// time since the one before. Pure: status.ts prints it.
import type { PaymentSummary } from "../gen/paynet/v1/paynet_pb.js";

export interface TimelineEvent {
  atMs: number;
  /** Since the event before (null for the first). */
  afterMs: number | null;
  event: string;
}

const roleOrder = ["payer", "payee"];

interface Dated {
  atMs: number;
  rank: number;
  event: string;
}

/** By time, then in role order: two banks answering in one millisecond are listed payer first. */
function byTime(events: Dated[]): Dated[] {
  return events.sort((a, b) => a.atMs - b.atMs || a.rank - b.rank);
}

function voteEvent(bank: string, role: string, vote: string): string {
  if (vote === "unanswered") return `${bank} (${role}) did not answer the prepare in time`;
  return `${bank} (${role}) voted ${vote}`;
}

/**
 * The payment's events in their causal order: begun, the votes (by time), the decision, the acknowledgements
 * (by time), finished. An event whose time is not recorded (0) is left out: a record kept before the gateway
 * recorded legs has begun, decided and finished only.
 */
export function paymentTimeline(payment: PaymentSummary): TimelineEvent[] {
  const decision = payment.state === "committed" ? "commit" : "abort";
  const dated: Dated[] = [];
  const add = (atMs: bigint, event: string) => {
    if (atMs !== 0n) dated.push({ atMs: Number(atMs), rank: 0, event });
  };
  add(payment.createdAtMs, "begun");
  const legs = payment.legs.map((leg) => ({ ...leg, rank: roleOrder.indexOf(leg.role) }));
  const votes = legs.filter((leg) => leg.votedAtMs !== 0n && leg.vote !== "");
  dated.push(
    ...byTime(
      votes.map((leg) => ({
        atMs: Number(leg.votedAtMs),
        rank: leg.rank,
        event: voteEvent(leg.bank, leg.role, leg.vote),
      })),
    ),
  );
  if (payment.decidedAtMs !== 0n)
    add(
      payment.decidedAtMs,
      `decided ${decision}${decision === "abort" && payment.reason ? ` (${payment.reason})` : ""}`,
    );
  const acks = legs.filter((leg) => leg.ackedAtMs !== 0n);
  dated.push(
    ...byTime(
      acks.map((leg) => ({
        atMs: Number(leg.ackedAtMs),
        rank: leg.rank,
        event: `${leg.bank} (${leg.role}) acknowledged the ${decision}`,
      })),
    ),
  );
  add(payment.finishedAtMs, "finished");
  return dated.map((event, index) => ({
    atMs: event.atMs,
    afterMs: index === 0 ? null : event.atMs - dated[index - 1]!.atMs,
    event: event.event,
  }));
}

/** What the timeline cannot show, said once under it; null when it shows everything recorded. */
export function timelineNote(payment: PaymentSummary): string | null {
  const decided = payment.decidedAtMs !== 0n;
  if (!decided || payment.fromBank === payment.toBank || payment.fromUser === "") return null;
  if (payment.legs.length === 0)
    return "no votes or acknowledgements recorded: the gateway recorded this payment before it kept them";
  if (payment.legs.some((leg) => leg.vote === ""))
    return "votes not recorded: decided when the gateway restarted (presumed abort), or by an earlier build";
  return null;
}

const secondMs = 1_000;
const minuteMs = 60 * secondMs;
const hourMs = 60 * minuteMs;

/** A duration as a person reads it: 15 ms, 1.234 s, 2 min 5 s, 3 h 12 min. */
export function formatDurationMs(ms: number): string {
  if (ms < 0) return `-${formatDurationMs(-ms)}`;
  if (ms < secondMs) return `${Math.round(ms)} ms`;
  if (ms < minuteMs) return `${(ms / secondMs).toFixed(3)} s`;
  if (ms < hourMs) return `${Math.floor(ms / minuteMs)} min ${Math.floor((ms % minuteMs) / secondMs)} s`;
  return `${Math.floor(ms / hourMs)} h ${Math.floor((ms % hourMs) / minuteMs)} min`;
}

/** The timeline as lines: time (ISO, UTC), +duration since the event before, the event. */
export function timelineLines(events: readonly TimelineEvent[]): string[] {
  const durations = events.map((event) =>
    event.afterMs === null ? "" : `${event.afterMs < 0 ? "" : "+"}${formatDurationMs(event.afterMs)}`,
  );
  const width = Math.max(0, ...durations.map((duration) => duration.length));
  return events.map(
    (event, index) => `${new Date(event.atMs).toISOString()}  ${durations[index]!.padStart(width)}  ${event.event}`,
  );
}
