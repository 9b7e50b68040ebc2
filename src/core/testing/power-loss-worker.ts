// A worker thread of the power-loss pool (power-loss-pool.ts): runs its seeds, a few schedules side by side,
// and posts back the results. Its own thread, because node:test's hooks on the test's thread make every await
// there many times slower; a second core does half the seeds; and its timers count turns of the event loop
// (turn-timers.ts), so that each schedule runs the same way every time.
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { assert } from "../domain/assert.js";
import { runPowerLossSchedule } from "./power-loss-sim.js";
import { stopMessage, type WorkerJob, type WorkerReply } from "./power-loss-pool.js";
import { installTurnTimers } from "./turn-timers.js";

async function run(job: WorkerJob, port: MessagePort): Promise<WorkerReply> {
  const reply: WorkerReply = { failing: [], schedules: 0, payments: 0, crashes: 0 };
  let next = 0;
  let stopped = false;
  port.on("message", (message: unknown) => {
    if (message === stopMessage) stopped = true;
  });
  const lane = async () => {
    while (!stopped && next < job.seeds.length) {
      const seed = job.seeds[next++]!;
      const trace = job.trace ? (line: string) => void process.stderr.write(`seed ${seed}: ${line}\n`) : undefined;
      const result = await runPowerLossSchedule(seed, job.unsafe, trace === undefined ? {} : { trace });
      reply.schedules += 1;
      reply.payments += result.stats.payments;
      reply.crashes += Object.values(result.stats.crashes).reduce((sum, count) => sum + count, 0);
      if (result.violations.length === 0) continue;
      reply.failing.push(result);
      if (!stopped && result.violations.some((violation) => violation.id === job.stopAt)) {
        stopped = true;
        port.postMessage(stopMessage);
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, lane));
  reply.failing.sort((a, b) => a.seed - b.seed);
  return reply;
}

assert(parentPort !== null, "power-loss-worker runs as a worker thread");
const port = parentPort;
installTurnTimers();
run(workerData as WorkerJob, port).then(
  (reply) => {
    port.postMessage(reply);
    port.removeAllListeners("message");
  },
  (error: unknown) => {
    throw error; // uncaught: the worker dies with it, and the pool's promise rejects with it
  },
);
