/**
 * A throwaway Apache Kafka broker for tests and benchmarks: one KRaft node
 * (broker and controller in one JVM) run with the machine's Java from the
 * Kafka jars on Maven Central.
 *
 * Jars: `infra/kafka/pom.xml` names Kafka and its runtime dependencies; the
 * first start copies them with Maven into `$XDG_CACHE_HOME/tributary/
 * kafka-<version>/lib` (default `~/.cache`), outside the repository, so every
 * later run (and every clone on the machine) starts from the cache. The copy
 * lands in a temporary folder renamed into place, so concurrent first starts
 * neither see nor leave a half-filled cache.
 *
 * A broker: a temp folder with `server.properties`, log4j settings (the
 * broker's own log goes to `broker.log` there, never to the test output) and
 * the data, formatted once with Kafka's storage tool. Three listeners on free
 * ports of 127.0.0.1: PLAINTEXT for clients, SASL_PLAINTEXT with the PLAIN
 * mechanism and one known user, and the controller's; with `tls: true` also
 * an SSL listener whose certificate (localhost, 127.0.0.1) a CA generated
 * for this broker signed (PEM keystore). `kill()` + `restart()`
 * take the broker down and bring it back on the same ports with the same data;
 * `pause()`/`resume()` freeze it (connections stay open, nothing answers).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, closeSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Kafka, logLevel } from "kafkajs";
import { createCertificateAuthority, issueCertificate } from "./certificates.ts";
import { freePort } from "./cluster.ts";

const pomPath = fileURLToPath(new URL("../../../../infra/kafka/pom.xml", import.meta.url));

/** How tests get Kafka here: an existing cluster, a local broker, or why neither. */
export type KafkaAvailability =
  | { readonly kind: "env"; readonly brokers: string[] }
  | { readonly kind: "local" }
  | { readonly kind: "missing"; readonly reason: string };

const howToGetKafka =
  "install Java 17 and Maven (apt-get install -y openjdk-17-jre-headless maven; the broker jars are then fetched from Maven Central and cached), " +
  "or point the tests at a running Kafka with TRIBUTARY_TEST_KAFKA_BROKERS=host:port[,host:port]";

/**
 * `TRIBUTARY_TEST_KAFKA_BROKERS` (comma-separated) wins unless `useEnv` is
 * false; otherwise a local broker needs Java 11+ (17 recommended) and either
 * the cached jars or Maven to fetch them.
 */
export function kafkaAvailability(options: { useEnv?: boolean } = {}): KafkaAvailability {
  const fromEnv = process.env.TRIBUTARY_TEST_KAFKA_BROKERS?.trim();
  if (fromEnv && options.useEnv !== false) {
    return { kind: "env", brokers: fromEnv.split(",").map((b) => b.trim()).filter(Boolean) };
  }
  const java = javaMajorVersion();
  if (java === null) return { kind: "missing", reason: `Kafka tests need a Kafka broker: java is not on PATH; ${howToGetKafka}` };
  if (java < 11) return { kind: "missing", reason: `Kafka tests need a Kafka broker: java ${java} is too old for Kafka ${kafkaVersion()} (needs 11+); ${howToGetKafka}` };
  if (!jarsCached() && !commandWorks("mvn", ["-v"])) {
    return { kind: "missing", reason: `Kafka tests need a Kafka broker: mvn is not on PATH to fetch the Kafka jars; ${howToGetKafka}` };
  }
  return { kind: "local" };
}

function commandWorks(file: string, args: string[]): boolean {
  try {
    execFileSync(file, args, { stdio: "ignore", timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

function javaMajorVersion(): number | null {
  // `java -version` writes to stderr: openjdk version "17.0.15" (or "1.8.0_412").
  const result = spawnSync("java", ["-version"], { encoding: "utf8", timeout: 30_000 });
  return result.status === 0 ? parseJavaVersion(result.stderr) : null;
}

function parseJavaVersion(text: string): number | null {
  const match = /version "(\d+)(?:\.(\d+))?/.exec(text);
  if (!match) return null;
  const first = Number(match[1]);
  return first === 1 ? Number(match[2]) : first;
}

/** The Kafka version the pom pins. */
export function kafkaVersion(): string {
  const match = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(pomPath, "utf8"));
  if (!match) throw new Error(`${pomPath} has no <kafka.version> property`);
  return match[1]!;
}

function cacheRoot(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "tributary");
}

/** The cache is valid for one content of the pom: a changed pom refetches. */
function pomDigest(): string {
  return createHash("sha256").update(readFileSync(pomPath)).digest("hex");
}

function libDir(): string {
  return join(cacheRoot(), `kafka-${kafkaVersion()}`, "lib");
}

function jarsCached(): boolean {
  const marker = join(libDir(), ".pom-sha256");
  return existsSync(marker) && readFileSync(marker, "utf8").trim() === pomDigest();
}

/** The folder of Kafka's jars, fetched with Maven into the cache the first time. */
export async function kafkaJars(): Promise<string> {
  const lib = libDir();
  if (jarsCached()) return lib;
  mkdirSync(join(lib, ".."), { recursive: true });
  const staging = mkdtempSync(`${lib}.fetching-`);
  chmodSync(staging, 0o755);
  try {
    await runToCompletion("mvn", ["-q", "-B", "-f", pomPath, "dependency:copy-dependencies", `-DoutputDirectory=${staging}`], "fetching the Kafka jars with Maven");
    writeFileSync(join(staging, ".pom-sha256"), pomDigest() + "\n");
    if (!jarsCached()) {
      rmSync(lib, { recursive: true, force: true }); // a cache of an older pom
      try {
        renameSync(staging, lib);
      } catch (error) {
        if (!jarsCached()) throw error; // else another process got there first
      }
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return lib;
}

function runToCompletion(file: string, args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", (error) => reject(new Error(`${what} failed: ${error.message}`)));
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${what} failed (${signal ?? `exit ${code}`}): ${file} ${args.join(" ")}\n${output.slice(-4000)}`));
    });
  });
}

export interface KafkaBrokerOptions {
  /** JVM heap (-Xmx), MB. Default 512. */
  readonly heapMb?: number;
  /** Extra or overriding `server.properties` lines. */
  readonly settings?: Record<string, string | number | boolean>;
  /** How long to wait for the broker to answer, ms. Default 60 s. */
  readonly startTimeoutMs?: number;
  /** Also listen with TLS (`sslBrokers`), certificate signed by a CA made for this broker (`tlsCaFile`). */
  readonly tls?: boolean;
}

export interface KafkaSaslCredentials {
  readonly mechanism: "plain";
  readonly username: string;
  readonly password: string;
}

/** JVMs still running when this process exits are killed with it (a Ctrl-C reaches them through the process group). */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

const saslUser: KafkaSaslCredentials = { mechanism: "plain", username: "tributary", password: "tributary-secret" };

/** A running single-node broker. */
export class KafkaBroker {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly dir: string,
    private readonly lib: string,
    private readonly ports: { readonly plaintext: number; readonly sasl: number; readonly controller: number; readonly ssl: number | null },
    private readonly options: KafkaBrokerOptions,
  ) {}

  /** `host:port` of the PLAINTEXT listener. */
  get brokers(): string[] {
    return [`127.0.0.1:${this.ports.plaintext}`];
  }

  /** `host:port` of the SASL_PLAINTEXT listener (PLAIN, `sasl`'s user). */
  get saslBrokers(): string[] {
    return [`127.0.0.1:${this.ports.sasl}`];
  }

  /** `host:port` of the SSL listener (`tls` brokers only). */
  get sslBrokers(): string[] {
    if (this.ports.ssl === null) throw new Error("this broker was started without tls: true");
    return [`127.0.0.1:${this.ports.ssl}`];
  }

  /** The CA (PEM file) that signed the SSL listener's certificate. */
  get tlsCaFile(): string {
    return join(this.dir, "tls", "ca.pem");
  }

  get sasl(): KafkaSaslCredentials {
    return saslUser;
  }

  /** The JVM's pid while it runs. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  static async start(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
    const lib = await kafkaJars();
    const dir = mkdtempSync(join(tmpdir(), "tributary-kafka-"));
    const ports = { plaintext: await freePort(), sasl: await freePort(), controller: await freePort(), ssl: options.tls ? await freePort() : null };
    const broker = new KafkaBroker(dir, lib, ports, options);
    try {
      broker.writeConfig();
      await runToCompletion("java", [
        "-cp", join(lib, "*"), `-Dlog4j.configuration=file:${join(dir, "log4j.properties")}`,
        "kafka.tools.StorageTool", "format", "-t", clusterId(), "-c", join(dir, "server.properties"),
      ], "formatting the Kafka storage");
      await broker.launch();
      return broker;
    } catch (error) {
      await broker.stop();
      throw error;
    }
  }

  private writeConfig(): void {
    const { plaintext, sasl, controller, ssl } = this.ports;
    const sslListener = ssl === null ? "" : `,SSL://127.0.0.1:${ssl}`;
    const settings: Record<string, string | number | boolean> = {
      "process.roles": "broker,controller",
      "node.id": 1,
      "controller.quorum.voters": `1@127.0.0.1:${controller}`,
      listeners: `PLAINTEXT://127.0.0.1:${plaintext},SASL_PLAINTEXT://127.0.0.1:${sasl},CONTROLLER://127.0.0.1:${controller}${sslListener}`,
      "advertised.listeners": `PLAINTEXT://127.0.0.1:${plaintext},SASL_PLAINTEXT://127.0.0.1:${sasl}${sslListener}`,
      "listener.security.protocol.map": `PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT${ssl === null ? "" : ",SSL:SSL"}`,
      ...(ssl === null ? {} : this.sslSettings()),
      "controller.listener.names": "CONTROLLER",
      "inter.broker.listener.name": "PLAINTEXT",
      "sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config":
        `org.apache.kafka.common.security.plain.PlainLoginModule required user_${saslUser.username}="${saslUser.password}";`,
      "log.dirs": join(this.dir, "data"),
      "num.partitions": 1,
      "offsets.topic.replication.factor": 1,
      "offsets.topic.num.partitions": 8,
      "transaction.state.log.replication.factor": 1,
      "transaction.state.log.min.isr": 1,
      "transaction.state.log.num.partitions": 4,
      "min.insync.replicas": 1,
      "group.initial.rebalance.delay.ms": 0,
      // After a kill -9 the restarted broker registers a new incarnation only
      // once the controller expired the old one's session (default 9 s).
      "broker.session.timeout.ms": 3000,
      "broker.heartbeat.interval.ms": 500,
      // Missing topics are an error (the bridge creates them only with --create-topics).
      "auto.create.topics.enable": false,
      ...this.options.settings,
    };
    const lines = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
    writeFileSync(join(this.dir, "server.properties"), lines.join("\n") + "\n");
    writeFileSync(join(this.dir, "log4j.properties"), [
      "log4j.rootLogger=INFO, file",
      "log4j.appender.file=org.apache.log4j.FileAppender",
      `log4j.appender.file.File=${join(this.dir, "broker.log")}`,
      "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
      "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
    ].join("\n") + "\n");
  }

  /** A CA and a broker certificate, as one PEM keystore file (unencrypted key, then the certificate). */
  private sslSettings(): Record<string, string> {
    const ca = createCertificateAuthority(join(this.dir, "tls"));
    const broker = issueCertificate(ca, "broker", { commonName: "localhost", altNames: ["DNS:localhost", "IP:127.0.0.1"], usage: "server" });
    const keystore = join(this.dir, "tls", "broker-keystore.pem");
    writeFileSync(keystore, readFileSync(broker.keyFile, "utf8") + readFileSync(broker.certFile, "utf8"), { mode: 0o600 });
    return { "listener.name.ssl.ssl.keystore.type": "PEM", "listener.name.ssl.ssl.keystore.location": keystore };
  }

  /** Starts the JVM on the configured ports and data; resolves once a client can list topics. */
  private async launch(): Promise<void> {
    const out = openSync(join(this.dir, "broker.out"), "a");
    const child = spawn("java", [
      `-Xmx${this.options.heapMb ?? 512}m`, "-Xms64m", "-Djava.awt.headless=true",
      `-Dlog4j.configuration=file:${join(this.dir, "log4j.properties")}`,
      "-cp", join(this.lib, "*"), "kafka.Kafka", join(this.dir, "server.properties"),
    ], { stdio: ["ignore", out, out] });
    closeSync(out);
    this.child = child;
    running.add(child);
    child.once("exit", () => running.delete(child));
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    let exit: string | null = null;
    child.once("exit", (code, signal) => (exit = signal ?? `exit ${code}`));
    const timeoutMs = this.options.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    while (!(await this.answers())) {
      if (exit !== null) throw new Error(`the Kafka broker exited while starting (${exit}):\n${this.brokerLog()}`);
      if (Date.now() > deadline) throw new Error(`the Kafka broker did not answer within ${timeoutMs} ms:\n${this.brokerLog()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async answers(): Promise<boolean> {
    const admin = new Kafka({
      clientId: "tributary-testkit", brokers: this.brokers, logLevel: logLevel.NOTHING,
      connectionTimeout: 1000, requestTimeout: 2000, retry: { retries: 0 },
    }).admin();
    try {
      await admin.connect();
      await admin.listTopics();
      return true;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  /** Takes the broker down (SIGKILL: a crash; SIGTERM: Kafka's orderly shutdown) and waits for the JVM to exit. */
  async kill(signal: "SIGKILL" | "SIGTERM" = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGCONT"); // a paused JVM cannot run its shutdown
    child.kill(signal);
    await this.exited;
    this.child = null;
  }

  /** Starts the broker again on the same ports with the same data (after `kill()`). */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Freezes the JVM (SIGSTOP): connections stay open, requests time out. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  /** Kills the broker and deletes its folder. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The last lines of the JVM's output and the broker's log, for error messages. */
  brokerLog(lines = 40): string {
    const tail = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n") : "");
    return [tail(join(this.dir, "broker.out")), tail(join(this.dir, "broker.log"))].filter(Boolean).join("\n");
  }
}

/** A Kafka cluster id: 16 random bytes, base64url without padding, not starting with '-' (as Uuid.randomUuid). */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}
