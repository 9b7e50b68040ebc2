// CPU time used by processes, so that `paynet bench` can say where a payment's CPU goes on the machine it
// ran on. Our own process from process.cpuUsage(); another process (a child the bench started) from
// /proc/PID/stat, which exists on Linux only: elsewhere its CPU is reported as unknown.
import { readFileSync } from "node:fs";

/** Linux reports a process's times in clock ticks of USER_HZ, which the kernel ABI fixes at 100 per second. */
const ticksPerS = 100;

/** The CPU time, user plus system, of every thread of a process so far, in ms; null if unreadable. */
export function processCpuMs(pid: number): number | null {
  if (pid === process.pid) {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  return cpuMsFromStat(stat);
}

/**
 * Parses a /proc/PID/stat line: utime and stime are fields 14 and 15. The command name (field 2) is in
 * parentheses and may itself hold spaces and parentheses, so fields are counted after the last ')'.
 */
export function cpuMsFromStat(stat: string): number | null {
  const close = stat.lastIndexOf(")");
  if (close < 0) return null;
  // After ')' come field 3 (state) onwards: utime is the 12th of these, stime the 13th.
  const fields = stat
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isSafeInteger(utime) || !Number.isSafeInteger(stime) || utime < 0 || stime < 0) return null;
  return ((utime + stime) * 1000) / ticksPerS;
}

export interface CpuUse {
  name: string;
  /** CPU time used between start and stop, or null when the process's time cannot be read. */
  cpuMs: number | null;
}

/** Measures the CPU each named process uses between start() and stop(). */
export class CpuMeter {
  readonly #processes: ReadonlyArray<{ name: string; pid: number }>;
  #startMs: Array<number | null> = [];

  constructor(processes: ReadonlyArray<{ name: string; pid: number }>) {
    this.#processes = processes;
  }

  start(): void {
    this.#startMs = this.#processes.map((entry) => processCpuMs(entry.pid));
  }

  stop(): CpuUse[] {
    return this.#processes.map((entry, index) => {
      const startMs = this.#startMs[index] ?? null;
      const endMs = processCpuMs(entry.pid);
      return { name: entry.name, cpuMs: startMs === null || endMs === null ? null : endMs - startMs };
    });
  }
}
