/**
 * Throwaway X.509 certificates for tests, made with the machine's `openssl`:
 * a CA, and server or client certificates it signs. Keys are P-256 (fast to
 * generate) and written mode 0600.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface CertificateAuthority {
  /** The folder holding every file below. */
  readonly dir: string;
  /** The CA certificate (PEM): what a client's sslrootcert / Kafka's ssl.ca points at. */
  readonly certFile: string;
  readonly keyFile: string;
}

export interface IssuedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  } catch (error) {
    const e = error as { code?: string; stderr?: Buffer };
    if (e.code === "ENOENT") throw new Error("the test certificates need the openssl command: apt-get install -y openssl");
    throw new Error(`openssl ${args.join(" ")} failed: ${e.stderr?.toString() ?? String(error)}`);
  }
}

const keyArgs = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A new self-signed CA in `dir` (created), files named `<name>.pem` and `<name>.key`. */
export function createCertificateAuthority(dir: string, name = "ca"): CertificateAuthority {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  openssl([
    "req", "-x509", ...keyArgs, "-keyout", keyFile, "-out", certFile, "-days", "7",
    "-subj", `/CN=Tributary test CA ${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  chmodSync(keyFile, 0o600);
  return { dir, certFile, keyFile };
}

/**
 * A certificate signed by `ca`, files `<name>.pem` / `<name>.key` in the CA's
 * folder. `altNames` in openssl's syntax (`DNS:localhost`, `IP:127.0.0.1`);
 * `usage` picks serverAuth or clientAuth.
 */
export function issueCertificate(ca: CertificateAuthority, name: string, options: { commonName: string; altNames?: readonly string[]; usage: "server" | "client" }): IssuedCertificate {
  const certFile = join(ca.dir, `${name}.pem`);
  const keyFile = join(ca.dir, `${name}.key`);
  const csrFile = join(ca.dir, `${name}.csr`);
  const extFile = join(ca.dir, `${name}.ext`);
  writeFileSync(extFile, [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${options.usage === "server" ? "serverAuth" : "clientAuth"}`,
    ...(options.altNames?.length ? [`subjectAltName=${options.altNames.join(",")}`] : []),
  ].join("\n") + "\n");
  openssl(["req", ...keyArgs, "-keyout", keyFile, "-out", csrFile, "-subj", `/CN=${options.commonName}`], ca.dir);
  openssl(["x509", "-req", "-in", csrFile, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-CAcreateserial", "-out", certFile, "-days", "7", "-extfile", extFile], ca.dir);
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}
