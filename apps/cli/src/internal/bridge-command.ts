/**
 * `tributary bridge`: forward streams to Kafka topics (services/kafka-bridge).
 * Settings come from flags, then TRIBUTARY_KAFKA_* environment variables,
 * then an optional JSON config file (--config), in that order of precedence.
 */
import { readFileSync } from "node:fs";
import type { KafkaConfig, SASLOptions } from "kafkajs";
import { BridgeError, DEFAULT_BRIDGE_GROUP, startBridge } from "@tributary/kafka-bridge";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { cliMessage, inCliTerms } from "./cli-errors.ts";
import { metricsOptions, metricsUsage, startMetrics } from "./metrics-option.ts";
import { onShutdown } from "./shutdown.ts";

const usage = `Usage: tributary bridge --streams a,b --brokers host:9092[,host2:9092] [options]

Forwards streams to Apache Kafka topics, as members of a consumer group: a
stream offset is committed only after Kafka acknowledged the records
(idempotent producer, acks=all). Run several: they share the partitions.
Record: key = event key, value = event data (JSON), headers = the event's own
headers plus tributary-id, -type, -stream, -partition, -offset, -committed-at.
Stream partition p goes to Kafka partition p when the partition counts match;
otherwise Kafka's partitioner places records by key. SIGTERM/SIGINT stop it
cleanly (exit 0).

  --streams a,b              streams to forward                     ($TRIBUTARY_BRIDGE_STREAMS)
  --brokers h:p,h:p          Kafka bootstrap brokers                ($TRIBUTARY_KAFKA_BROKERS)
  --topic-prefix P           topic = P + stream name (default: no prefix)
  --topic-map s=t,s2=t2      explicit topic per stream (overrides the prefix)
  --create-topics            create missing topics with the stream's partition count
                             (default: a missing topic is an error)
  --group G                  consumer group of the bridges (default: ${DEFAULT_BRIDGE_GROUP})
  --client-id ID             Kafka client id (default: tributary-bridge) ($TRIBUTARY_KAFKA_CLIENT_ID)
  --ssl                      connect with TLS, verified with the system's CAs ($TRIBUTARY_KAFKA_SSL=1)
  --ssl-ca FILE              verify the brokers with this CA (PEM); implies --ssl ($TRIBUTARY_KAFKA_SSL_CA)
  --ssl-cert FILE            client certificate (PEM) for brokers that ask one ($TRIBUTARY_KAFKA_SSL_CERT)
  --ssl-key FILE             its key (PEM)                          ($TRIBUTARY_KAFKA_SSL_KEY)
  --sasl-mechanism M         plain | scram-sha-256 | scram-sha-512  ($TRIBUTARY_KAFKA_SASL_MECHANISM)
  --sasl-username U                                                 ($TRIBUTARY_KAFKA_SASL_USERNAME)
  --sasl-password-file FILE  read the password from a file          ($TRIBUTARY_KAFKA_SASL_PASSWORD_FILE)
  --sasl-password P          visible in ps: prefer the file or      ($TRIBUTARY_KAFKA_SASL_PASSWORD)
  --batch-size N             events per partition per send (default 500)
  --concurrency N            partitions sent at once (default 8)
  --producers N              idempotent producers, each its own connection: Produce
                             requests in flight per broker (default 4)
  --config FILE              JSON with any of: streams, brokers, topicPrefix, topicMap,
                             createTopics, group, clientId, ssl, sslCa, sslCert, sslKey,
                             sasl {mechanism, username, password | passwordFile},
                             batchSize, concurrency, producers
  --database-url URL         PostgreSQL to read (default: $DATABASE_URL)
  --database-url-file PATH   or read the URL from a file (default: $DATABASE_URL_FILE)
${metricsUsage}`;

interface FileConfig {
  streams?: string[];
  brokers?: string[];
  topicPrefix?: string;
  topicMap?: Record<string, string>;
  createTopics?: boolean;
  group?: string;
  clientId?: string;
  ssl?: boolean;
  sslCa?: string;
  sslCert?: string;
  sslKey?: string;
  sasl?: { mechanism: string; username: string; password?: string; passwordFile?: string };
  batchSize?: number;
  concurrency?: number;
  producers?: number;
}

const list = (text: string | undefined): string[] | undefined =>
  text === undefined ? undefined : text.split(",").map((s) => s.trim()).filter((s) => s !== "");

function positive(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer, not '${text}'`);
  return n;
}

/** A secret or PEM file named by a flag, variable or config key; `trim` drops a trailing newline (a password). */
function readNamedFile(path: string, source: string, what: string, trim = false): string {
  try {
    const text = readFileSync(path, "utf8");
    return trim ? text.replace(/\r?\n$/, "") : text;
  } catch (error) {
    throw new UsageError(`${source} ${path}: cannot read the ${what} file (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

function readConfigFile(path: string | undefined): FileConfig {
  if (path === undefined) return {};
  try {
    return JSON.parse(readFileSync(path, "utf8")) as FileConfig;
  } catch (error) {
    throw new UsageError(`--config ${path}: ${(error as Error).message} (expected a JSON object, see --help)`);
  }
}

/**
 * kafkajs `ssl`: off, on with the system's CAs, or verified with a CA file
 * (and a client certificate). Verification is never turned off.
 */
function kafkaTls(values: { ssl?: boolean | undefined; "ssl-ca"?: string | undefined; "ssl-cert"?: string | undefined; "ssl-key"?: string | undefined }, file: FileConfig): Pick<KafkaConfig, "ssl"> {
  const env = process.env;
  const pick = (flag: "ssl-ca" | "ssl-cert" | "ssl-key", variable: string, key: "sslCa" | "sslCert" | "sslKey") => {
    if (values[flag] !== undefined) return { path: values[flag], source: `--${flag}` };
    if (env[variable]) return { path: env[variable], source: variable };
    if (file[key] !== undefined) return { path: file[key], source: `--config ${key}` };
    return undefined;
  };
  const ca = pick("ssl-ca", "TRIBUTARY_KAFKA_SSL_CA", "sslCa");
  const cert = pick("ssl-cert", "TRIBUTARY_KAFKA_SSL_CERT", "sslCert");
  const key = pick("ssl-key", "TRIBUTARY_KAFKA_SSL_KEY", "sslKey");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--ssl-cert and --ssl-key go together: give both (a client certificate and its key)");
  const on = values.ssl ?? (env.TRIBUTARY_KAFKA_SSL === "1" || file.ssl === true);
  if (!on && !ca && !cert) return {};
  return {
    ssl: {
      rejectUnauthorized: true,
      ...(ca ? { ca: [readNamedFile(ca.path, ca.source, "CA")] } : {}),
      ...(cert && key ? { cert: readNamedFile(cert.path, cert.source, "client certificate"), key: readNamedFile(key.path, key.source, "client key") } : {}),
    },
  };
}

export async function bridgeCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...databaseUrlOption,
    streams: { type: "string" },
    brokers: { type: "string" },
    "topic-prefix": { type: "string" },
    "topic-map": { type: "string" },
    "create-topics": { type: "boolean" },
    group: { type: "string" },
    "client-id": { type: "string" },
    ssl: { type: "boolean" },
    "ssl-ca": { type: "string" },
    "ssl-cert": { type: "string" },
    "ssl-key": { type: "string" },
    "sasl-mechanism": { type: "string" },
    "sasl-username": { type: "string" },
    "sasl-password": { type: "string" },
    "sasl-password-file": { type: "string" },
    "batch-size": { type: "string" },
    concurrency: { type: "string" },
    producers: { type: "string" },
    config: { type: "string" },
    ...metricsOptions,
  }, usage);
  const env = process.env;
  const file = readConfigFile(values.config);

  const streams = list(values.streams) ?? list(env.TRIBUTARY_BRIDGE_STREAMS) ?? file.streams;
  if (!streams?.length) throw new UsageError(`no streams to forward: give --streams a,b\n\n${usage}`);
  const brokers = list(values.brokers) ?? list(env.TRIBUTARY_KAFKA_BROKERS) ?? file.brokers;
  if (!brokers?.length) throw new UsageError("no Kafka brokers: give --brokers host:9092 (or TRIBUTARY_KAFKA_BROKERS)");

  let topicMap = file.topicMap;
  if (values["topic-map"] !== undefined) {
    topicMap = {};
    for (const pair of list(values["topic-map"])!) {
      const [stream, topic] = pair.split("=");
      if (!stream || !topic) throw new UsageError(`--topic-map: '${pair}' is not stream=topic`);
      topicMap[stream] = topic;
    }
  }

  const mechanism = (values["sasl-mechanism"] ?? env.TRIBUTARY_KAFKA_SASL_MECHANISM ?? file.sasl?.mechanism)?.toLowerCase();
  let sasl: SASLOptions | undefined;
  if (mechanism !== undefined) {
    if (mechanism !== "plain" && mechanism !== "scram-sha-256" && mechanism !== "scram-sha-512") {
      throw new UsageError(`--sasl-mechanism '${mechanism}' is not supported: use plain, scram-sha-256 or scram-sha-512`);
    }
    const username = values["sasl-username"] ?? env.TRIBUTARY_KAFKA_SASL_USERNAME ?? file.sasl?.username;
    if (values["sasl-password"] !== undefined) {
      process.stderr.write("warning: --sasl-password is visible to any user of this machine (ps, /proc): use --sasl-password-file FILE or TRIBUTARY_KAFKA_SASL_PASSWORD instead.\n");
    }
    const passwordFile = values["sasl-password-file"] ?? env.TRIBUTARY_KAFKA_SASL_PASSWORD_FILE ?? file.sasl?.passwordFile;
    const password = values["sasl-password"] ??
      (passwordFile !== undefined ? readNamedFile(passwordFile, values["sasl-password-file"] !== undefined ? "--sasl-password-file" : env.TRIBUTARY_KAFKA_SASL_PASSWORD_FILE !== undefined ? "TRIBUTARY_KAFKA_SASL_PASSWORD_FILE" : "--config sasl.passwordFile", "password", true) : undefined) ??
      env.TRIBUTARY_KAFKA_SASL_PASSWORD ?? file.sasl?.password;
    if (username === undefined || password === undefined) {
      throw new UsageError("--sasl-mechanism needs --sasl-username and a password: --sasl-password-file FILE or TRIBUTARY_KAFKA_SASL_PASSWORD (or their TRIBUTARY_KAFKA_SASL_* variables)");
    }
    sasl = { mechanism, username, password } as SASLOptions;
  }
  const kafka: KafkaConfig = {
    brokers,
    clientId: values["client-id"] ?? env.TRIBUTARY_KAFKA_CLIENT_ID ?? file.clientId ?? "tributary-bridge",
    ...kafkaTls(values, file),
    ...(sasl ? { sasl } : {}),
  };

  const batchSize = positive(values["batch-size"], "--batch-size") ?? file.batchSize;
  const concurrency = positive(values.concurrency, "--concurrency") ?? file.concurrency;
  const producers = positive(values.producers, "--producers") ?? file.producers;
  const topicPrefix = values["topic-prefix"] ?? file.topicPrefix;
  const group = values.group ?? file.group;
  const metrics = await startMetrics(values);
  const handle = startBridge({
    databaseUrl: databaseUrl(values),
    streams,
    kafka,
    createTopics: values["create-topics"] ?? file.createTopics ?? false,
    ...(topicPrefix !== undefined ? { topicPrefix } : {}),
    ...(topicMap ? { topicMap } : {}),
    ...(group !== undefined ? { group } : {}),
    ...(batchSize ? { batchSize } : {}),
    ...(concurrency ? { concurrency } : {}),
    ...(producers ? { producers } : {}),
    ...(metrics ? { metrics: metrics.registry } : {}),
    // What the bridge retries (Kafka unreachable) it reports as it goes on: in the CLI's terms too.
    log: (message) => console.error(`[tributary bridge] ${inCliTerms(message)}`),
  });
  onShutdown(async () => {
    await handle.stop();
    await metrics?.endpoint.close();
  });
  try {
    await handle.done;
    await metrics?.endpoint.close();
  } catch (error) {
    await metrics?.endpoint.close();
    // Bad credentials, a missing topic or stream: a setting to fix, said as such (exit 2).
    if (error instanceof BridgeError) throw new UsageError(cliMessage(error));
    throw error;
  }
}
