// Issues the CA and per-role certificates with node:crypto keys and node-forge X.509 (no openssl needed).
import { generateKeyPair, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { readFile, stat, access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import forge from "node-forge";
import { writeFileAtomic } from "../durable/files.js";
import { CertificateError } from "./certificate-error.js";
import { ensureSessionKey, sessionKeyPath } from "./session-key.js";
import {
  bankCommonName,
  bankServerName,
  clientCommonName,
  gatewayCommonName,
  gatewayServerName,
  operatorCommonName,
} from "./identity.js";

const generateKeyPairAsync = promisify(generateKeyPair);
const keyBits = 2048;
const caValidityDays = 3650;
const leafValidityDays = 825;
const dayMs = 86_400_000;

export interface CertificateFiles {
  readonly certPath: string;
  readonly keyPath: string;
}

export function caFiles(certificateDir: string): CertificateFiles {
  return { certPath: join(certificateDir, "ca_cert.pem"), keyPath: join(certificateDir, "ca_key.pem") };
}
/** The gateway's identity keeps the seed's server_* names. */
export function gatewayFiles(certificateDir: string): CertificateFiles {
  return { certPath: join(certificateDir, "server_cert.pem"), keyPath: join(certificateDir, "server_key.pem") };
}
export function clientFiles(certificateDir: string): CertificateFiles {
  return { certPath: join(certificateDir, "client_cert.pem"), keyPath: join(certificateDir, "client_key.pem") };
}
export function operatorFiles(certificateDir: string): CertificateFiles {
  return { certPath: join(certificateDir, "operator_cert.pem"), keyPath: join(certificateDir, "operator_key.pem") };
}
export function bankFiles(certificateDir: string, bank: string): CertificateFiles {
  return {
    certPath: join(certificateDir, `bank_${bank}_cert.pem`),
    keyPath: join(certificateDir, `bank_${bank}_key.pem`),
  };
}

interface KeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
}

async function newKeyPair(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPairAsync("rsa", {
    modulusLength: keyBits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** A random 128-bit serial number as hex, a positive DER INTEGER in its shortest form. */
export function serialNumber(): string {
  const bytes = randomBytes(16);
  // DER wants a positive INTEGER in its shortest form: a first byte of 0x00 followed by one below 0x80 is
  // "illegal padding" to OpenSSL, which then refuses the whole certificate (1 in 128 before this line).
  bytes[0] = 0x01 + (bytes[0]! % 0x7f);
  return bytes.toString("hex");
}

interface Subject {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  serverAuth: boolean;
  clientAuth: boolean;
}

function signLeaf(subject: Subject, keys: KeyPair, caCertPem: string, caKeyPem: string): string {
  const caCert = forge.pki.certificateFromPem(caCertPem);
  const caKey = forge.pki.privateKeyFromPem(caKeyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + leafValidityDays * dayMs);
  cert.setSubject([
    { name: "commonName", value: subject.commonName },
    { name: "organizationName", value: "paynet" },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [
    ...subject.dnsNames.map((value) => ({ type: 2, value })),
    ...subject.ipAddresses.map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: subject.serverAuth, clientAuth: subject.clientAuth },
    ...(altNames.length > 0 ? [{ name: "subjectAltName", altNames }] : []),
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

function selfSignCa(keys: KeyPair, commonName: string): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + caValidityDays * dayMs);
  const attributes = [
    { name: "commonName", value: commonName },
    { name: "organizationName", value: "paynet" },
  ];
  cert.setSubject(attributes);
  cert.setIssuer(attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privateKeyPem), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function writePair(files: CertificateFiles, certPem: string, keyPem: string): Promise<void> {
  // The key first: a certificate on disk always has its key beside it.
  await writeFileAtomic(files.keyPath, keyPem, { mode: 0o600 });
  await writeFileAtomic(files.certPath, certPem, { mode: 0o644 });
}

export interface IssueOptions {
  certificateDir: string;
  banks: readonly string[];
  /** Extra host names or IP addresses the gateway certificate is valid for. */
  gatewayHosts?: readonly string[];
  /** Reissue every leaf even if present (the CA and the session key are kept unless missing). */
  force?: boolean;
}

function isIpAddress(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(":");
}

/** Creates whatever certificates are missing, and the gateways' session key; returns the paths it wrote. */
export async function issueCertificates(options: IssueOptions): Promise<string[]> {
  const { certificateDir } = options;
  await mkdir(certificateDir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const ca = caFiles(certificateDir);
  if (!(await exists(ca.certPath)) || !(await exists(ca.keyPath))) {
    const keys = await newKeyPair();
    await writePair(ca, selfSignCa(keys, "paynet CA"), keys.privateKeyPem);
    written.push(ca.certPath);
  }
  const caCertPem = await readFile(ca.certPath, "utf8");
  const caKeyPem = await readFile(ca.keyPath, "utf8");
  const localNames = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] };
  const extraHosts = options.gatewayHosts ?? [];
  const leaves: Array<{ files: CertificateFiles; subject: Subject }> = [
    {
      files: gatewayFiles(certificateDir),
      subject: {
        commonName: gatewayCommonName,
        dnsNames: [gatewayServerName, ...localNames.dnsNames, ...extraHosts.filter((host) => !isIpAddress(host))],
        ipAddresses: [...localNames.ipAddresses, ...extraHosts.filter(isIpAddress)],
        serverAuth: true,
        clientAuth: true,
      },
    },
    {
      files: clientFiles(certificateDir),
      subject: { commonName: clientCommonName, dnsNames: [], ipAddresses: [], serverAuth: false, clientAuth: true },
    },
    {
      files: operatorFiles(certificateDir),
      subject: { commonName: operatorCommonName, dnsNames: [], ipAddresses: [], serverAuth: false, clientAuth: true },
    },
    ...options.banks.map((bank) => ({
      files: bankFiles(certificateDir, bank),
      subject: {
        commonName: bankCommonName(bank),
        dnsNames: [bankServerName(bank), ...localNames.dnsNames],
        ipAddresses: localNames.ipAddresses,
        serverAuth: true,
        clientAuth: true,
      },
    })),
  ];
  for (const leaf of leaves) {
    if (!options.force && (await exists(leaf.files.certPath)) && (await exists(leaf.files.keyPath))) continue;
    const keys = await newKeyPair();
    await writePair(leaf.files, signLeaf(leaf.subject, keys, caCertPem, caKeyPem), keys.privateKeyPem);
    written.push(leaf.files.certPath);
  }
  // Kept like the CA, even with `force`: a new key would log out every client of every gateway.
  if ((await ensureSessionKey(certificateDir)).created) written.push(sessionKeyPath(certificateDir));
  return written;
}

export interface LoadedIdentity {
  readonly caPem: Buffer;
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
}

/** Reads a role's certificate, its key (refused unless private to the owner) and the CA. */
export async function loadIdentity(certificateDir: string, files: CertificateFiles): Promise<LoadedIdentity> {
  const keyStat = await stat(files.keyPath).catch((error: Error) => {
    throw new CertificateError(`cannot read private key ${files.keyPath}: ${error.message} (run \`paynet certs\`)`, {
      cause: error,
    });
  });
  if ((keyStat.mode & 0o077) !== 0) {
    throw new CertificateError(
      `private key ${files.keyPath} is readable by others (mode ${(keyStat.mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  return {
    caPem: await readPem(caFiles(certificateDir).certPath, "CA certificate"),
    certPem: await readPem(files.certPath, "certificate"),
    keyPem: await readPem(files.keyPath, "private key"),
  };
}

function readPem(path: string, what: string): Promise<Buffer> {
  return readFile(path).catch((error: Error) => {
    throw new CertificateError(`cannot read ${what} ${path}: ${error.message} (run \`paynet certs\`)`, {
      cause: error,
    });
  });
}
