// Serializes in-process access to one piece of state, in arrival order.
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  run<T>(critical: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(critical);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
