// Certificates that cannot be used: a missing or unreadable file, or a peer whose CA is not ours. A setup
// problem, not an outage: waiting or retrying never fixes it, so callers report it rather than queue work.
export class CertificateError extends Error {
  override readonly name = "CertificateError";
}
