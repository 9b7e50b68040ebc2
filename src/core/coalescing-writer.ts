// Group commit for one file: callers that ask for durability while a write is in flight share the next write.
export class CoalescingWriter {
  readonly #write: () => Promise<void>;
  #current: Promise<void> | null = null;
  #next: Promise<void> | null = null;

  constructor(write: () => Promise<void>) {
    this.#write = write;
  }

  /** Resolves once a write that started after this call has completed (so it covers the caller's changes). */
  flush(): Promise<void> {
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
