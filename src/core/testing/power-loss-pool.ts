// Runs many power-loss schedules on worker threads (power-loss-worker.ts), one per core up to two, and merges
// their results. Under tsx (the tests) a worker is started with tsx registered first, as workers do not
// inherit the loader of the thread that starts them.
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import type { PowerLossResult, Unsafe } from "./power-loss-sim.js";

/** What one worker is given. */
export interface WorkerJob {
  seeds: number[];
  unsafe: Unsafe;
  /** Schedules run side by side in the worker's thread (their turns interleave; each stays deterministic). */
  concurrency: number;
  /** Stop launching seeds once one breaks this invariant (null: run them all). */
  stopAt: string | null;
  /** Print each schedule's story to standard error (for replaying one seed). */
  trace: boolean;
}

/** What a worker (and the pool) answers. */
export interface WorkerReply {
  /** The results that break an invariant, in seed order. */
  failing: PowerLossResult[];
  schedules: number;
  payments: number;
  crashes: number;
}

/** Sent by a worker that found its job's `stopAt`, and by the pool to every worker then: all stop. */
export const stopMessage = "power-loss-stop";

export interface PoolJob {
  seeds: readonly number[];
  unsafe?: Unsafe;
  /** Worker threads (default: one per core, at most two). */
  workers?: number;
  /** Schedules side by side in each worker (default 16). */
  concurrency?: number;
  /** Stop once a schedule breaks this invariant. */
  stopAt?: string | null;
  /** Print each schedule's story to standard error. */
  trace?: boolean;
}

export const poolDefaults = Object.freeze({ workersMax: 2, concurrency: 16 });

/** Runs `job.seeds` (dealt round-robin to the workers); the merged reply lists failing results in seed order. */
export async function runInWorkers(job: PoolJob): Promise<WorkerReply> {
  const workers = Math.max(
    1,
    Math.min(job.workers ?? Math.min(poolDefaults.workersMax, availableParallelism()), job.seeds.length),
  );
  const shares = Array.from({ length: workers }, (_, worker) =>
    job.seeds.filter((_, index) => index % workers === worker),
  );
  const started = shares.map((seeds) =>
    startWorker({
      seeds,
      unsafe: job.unsafe ?? {},
      concurrency: job.concurrency ?? poolDefaults.concurrency,
      stopAt: job.stopAt ?? null,
      trace: job.trace ?? false,
    }),
  );
  // One worker's find stops them all.
  for (const { worker } of started)
    worker.on(
      "message",
      (message: unknown) =>
        message === stopMessage && started.forEach((other) => other.worker.postMessage(stopMessage)),
    );
  const replies = await Promise.all(started.map(({ reply }) => reply));
  return {
    failing: replies.flatMap((reply) => reply.failing).sort((a, b) => a.seed - b.seed),
    schedules: replies.reduce((total, reply) => total + reply.schedules, 0),
    payments: replies.reduce((total, reply) => total + reply.payments, 0),
    crashes: replies.reduce((total, reply) => total + reply.crashes, 0),
  };
}

function startWorker(job: WorkerJob): { worker: Worker; reply: Promise<WorkerReply> } {
  const underTsx = import.meta.url.endsWith(".ts");
  const entry = new URL(underTsx ? "./power-loss-worker.ts" : "./power-loss-worker.js", import.meta.url);
  const worker = underTsx
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`,
        { eval: true, workerData: job },
      )
    : new Worker(entry, { workerData: job });
  const reply = new Promise<WorkerReply>((resolve, reject) => {
    worker.on("message", (message: WorkerReply | typeof stopMessage) => {
      if (message === stopMessage) return;
      resolve(message);
      // A schedule that broke an invariant may leave a retry loop behind: the worker is done all the same.
      void worker.terminate();
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`a power-loss worker exited with code ${code} before answering`)));
  });
  return { worker, reply };
}
