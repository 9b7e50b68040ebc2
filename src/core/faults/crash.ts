// Fault injection for crash-point tests: PAYNET_CRASH_AT=<point>[:<n>] makes the process exit abruptly,
// with no cleanup (as SIGKILL would), the n-th time (default first) it passes the named point.
// Configured once at start by the role; src/core never reads the environment itself.

/** Every crash point, by the process that passes it. README's table describes each; crash.test.ts kills at each. */
export const crashPointsByRole = {
  gateway: [
    "gateway-after-preparing",
    "gateway-after-prepares",
    "gateway-after-commit-logged",
    "gateway-after-first-commit",
    "gateway-journal-torn",
    "gateway-log-temp-written",
    "gateway-archive-appended",
    "gateway-archive-index-temp-written",
  ],
  bank: [
    "bank-after-hold",
    "bank-journal-torn",
    "bank-before-commit",
    "bank-after-commit-logged",
    "bank-csv-temp-written",
    "bank-checkpoint-after-csv",
    "pending-temp-written",
    "bank-checkpoint-before-journal-delete",
  ],
  client: ["client-after-queue", "client-before-dequeue"],
} as const;

export type CrashPointName = (typeof crashPointsByRole)[keyof typeof crashPointsByRole][number];

let armedPoint: string | null = null;
let passesLeft = 0;

export function armCrashPoint(spec: string | undefined): void {
  if (spec === undefined || spec === "") return;
  const [point, countText] = spec.split(":");
  const count = countText === undefined ? 1 : Number(countText);
  if (!point || !Number.isInteger(count) || count < 1) throw new Error(`bad crash point spec ${JSON.stringify(spec)}: want <point>[:<n>]`);
  armedPoint = point;
  passesLeft = count;
}

export function crashPoint(name: CrashPointName): void {
  if (armedPoint !== name) return;
  passesLeft -= 1;
  if (passesLeft > 0) return;
  process.stderr.write(`paynet: crash point ${name} reached, exiting abruptly\n`);
  process.kill(process.pid, "SIGKILL");
}

/** Whether the next pass through `name` would crash, for points that must prepare a partial write. */
export function isCrashPointArmed(name: CrashPointName): boolean {
  return armedPoint === name && passesLeft === 1;
}
