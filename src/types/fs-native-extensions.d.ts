// The part of fs-native-extensions (no types of its own) that durable/file-lock.ts uses: open-file-description
// locks (fcntl F_OFD_SETLK on Linux) on a whole file.
declare module "fs-native-extensions" {
  /** Takes the lock of the file open as `fd` (exclusive unless `shared`); false, at once, when another holds it. */
  export function tryLock(fd: number, options?: { shared?: boolean }): boolean;
  export function unlock(fd: number): void;
}
