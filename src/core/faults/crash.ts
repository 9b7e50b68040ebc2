// Fault injection for crash-point tests: PAYNET_CRASH_AT=<point>[:<n>] makes the process exit abruptly,
// with no cleanup (as SIGKILL would), the n-th time (default first) it passes the named point. Every crash
// point is also a pause point: PAYNET_PAUSE_AT=<point>[:<n>] makes the process stop itself there (SIGSTOP,
// as a stop-the-world pause or a frozen VM would) until something sends it SIGCONT, for tests of what a
// paused process holds (a lock) and does when it wakes.
// Configured once at start by cli.ts; src/core never reads the environment itself.

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

interface Armed {
  point: string;
  passesLeft: number;
}

let crashArmed: Armed | null = null;
let pauseArmed: Armed | null = null;

function parseSpec(variable: string, spec: string | undefined): Armed | null {
  if (spec === undefined || spec === "") return null;
  const [point, countText] = spec.split(":");
  const count = countText === undefined ? 1 : Number(countText);
  if (!point || !Number.isInteger(count) || count < 1)
    throw new Error(`bad ${variable} ${JSON.stringify(spec)}: want <point>[:<n>]`);
  return { point, passesLeft: count };
}

export function armCrashPoint(spec: string | undefined): void {
  crashArmed = parseSpec("PAYNET_CRASH_AT", spec);
}

export function armPausePoint(spec: string | undefined): void {
  pauseArmed = parseSpec("PAYNET_PAUSE_AT", spec);
}

/** Counts a pass through `name`; true on the pass that fires. */
function fires(armed: Armed | null, name: string): boolean {
  if (armed === null || armed.point !== name || armed.passesLeft === 0) return false;
  armed.passesLeft -= 1;
  return armed.passesLeft === 0;
}

export function crashPoint(name: CrashPointName): void {
  if (fires(pauseArmed, name)) {
    // On Linux, writes to a pipe or a file are synchronous: the line is out before the process stops.
    process.stderr.write(`paynet: pause point ${name} reached, stopping (pid ${process.pid}) until SIGCONT\n`);
    process.kill(process.pid, "SIGSTOP");
  }
  if (!fires(crashArmed, name)) return;
  process.stderr.write(`paynet: crash point ${name} reached, exiting abruptly\n`);
  process.kill(process.pid, "SIGKILL");
}

/** Whether the next pass through `name` would crash, for points that must prepare a partial write. */
export function isCrashPointArmed(name: CrashPointName): boolean {
  return crashArmed !== null && crashArmed.point === name && crashArmed.passesLeft === 1;
}
