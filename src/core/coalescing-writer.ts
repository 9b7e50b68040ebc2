// Group commit for one file: callers that ask for durability while a write is in flight share the next write.
export class CoalescingWriter {
  readonly #write: () => Promise<void>;
  readonly #onBatch: (callers: number) => void;
  #current: Promise<void> | null = null;
  #next: Promise<void> | null = null;
  #callersWaiting = 0;

  /** `onBatch` is told how many flush() calls each write covers (for group-commit metrics). */
  constructor(write: () => Promise<void>, onBatch: (callers: number) => void = () => undefined) {
    this.#write = write;
    this.#onBatch = onBatch;
  }

  /** Resolves once a write that started after this call has completed (so it covers the caller's changes). */
  flush(): Promise<void> {
    this.#callersWaiting += 1;
    if (this.#next !== null) return this.#next;
    if (this.#current === null) {
      this.#current = this.#start();
      return this.#current;
    }
    this.#next = this.#current.then(
      () => this.#promoteNext(),
      () => this.#promoteNext(),
    );
    return this.#next;
  }

  #promoteNext(): Promise<void> {
    this.#next = null;
    this.#current = this.#start();
    return this.#current;
  }

  #start(): Promise<void> {
    this.#onBatch(this.#callersWaiting);
    this.#callersWaiting = 0;
    const running = this.#write();
    running.then(
      () => this.#settle(running),
      () => this.#settle(running),
    );
    return running;
  }

  #settle(running: Promise<void>): void {
    if (this.#current === running) this.#current = null;
  }
}
