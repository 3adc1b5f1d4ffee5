// validate: checks rendered natter manifests (helm/test.sh renders them) against the
// Kubernetes schemas of kubernetes-models (and prometheus-operator's for ServiceMonitor),
// then checks what ties the objects together and what the drain needs:
//   - unique kind/name; the chart's labels on every object;
//   - the Service, PDB, ServiceMonitor and spread constraints select the pods; the HPA
//     scales the Deployment; the Ingress points at the Service's http port;
//   - every ConfigMap/Secret key the pods reference exists (when the chart renders it);
//   - probes: liveness GET /healthz, readiness GET /readyz on the http port;
//   - preStop sleep + NATTER_DRAIN_GRACE + NATTER_NODE_TTL < terminationGracePeriodSeconds;
//   - non-root, read-only root filesystem, no privilege escalation, resources set.
// Usage: node validate.mjs rendered.yaml [...]   Exits 1 listing every problem.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const MODELS = {
  v1: "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "policy/v1": "kubernetes-models/policy/v1",
  "autoscaling/v2": "kubernetes-models/autoscaling/v2",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

const problems = [];
const fail = (file, msg) => problems.push(`${file}: ${msg}`);

const matches = (selector, labels) =>
  selector && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

async function validateFile(file) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const objs = [];
  for (const d of docs) {
    if (d.errors.length) {
      fail(file, `YAML error: ${d.errors[0].message}`);
      continue;
    }
    const o = d.toJS();
    if (o) objs.push(o);
  }
  if (!objs.length) fail(file, "no objects");

  // Schemas.
  const seen = new Set();
  for (const o of objs) {
    const id = `${o.kind}/${o.metadata?.name}`;
    if (seen.has(id)) fail(file, `duplicate ${id}`);
    seen.add(id);
    const mod = MODELS[o.apiVersion];
    if (!mod) { fail(file, `${id}: no schema for apiVersion ${o.apiVersion}`); continue; }
    const Model = (await import(mod))[o.kind];
    if (!Model) { fail(file, `${id}: no schema for kind ${o.kind} in ${o.apiVersion}`); continue; }
    try {
      new Model(o).validate();
    } catch (e) {
      fail(file, `${id} does not match the ${o.apiVersion} ${o.kind} schema: ${e.message}`);
    }
    if (!o.metadata?.labels?.["app.kubernetes.io/name"])
      fail(file, `${id}: missing app.kubernetes.io/name label`);
  }

  const of = (kind) => objs.filter((o) => o.kind === kind);
  const [dep] = of("Deployment");
  const [svc] = of("Service");
  const [cm] = of("ConfigMap");
  const [secret] = of("Secret");
  if (!dep || !svc || !cm) { fail(file, "needs a Deployment, a Service and a ConfigMap"); return objs.length; }
  const pod = dep.spec.template;
  const podLabels = pod.metadata.labels;
  if (!matches(dep.spec.selector.matchLabels, podLabels)) fail(file, "Deployment selector misses its pods");
  if (!matches(svc.spec.selector, podLabels)) fail(file, "Service selector misses the pods");
  for (const pdb of of("PodDisruptionBudget"))
    if (!matches(pdb.spec.selector.matchLabels, podLabels)) fail(file, "PDB selector misses the pods");
  for (const hpa of of("HorizontalPodAutoscaler")) {
    const t = hpa.spec.scaleTargetRef;
    if (t.kind !== "Deployment" || t.name !== dep.metadata.name) fail(file, "HPA does not scale the Deployment");
    if (dep.spec.replicas !== undefined) fail(file, "Deployment sets replicas although an HPA owns them");
  }
  for (const sm of of("ServiceMonitor")) {
    if (!matches(sm.spec.selector.matchLabels, svc.metadata.labels)) fail(file, "ServiceMonitor misses the Service");
    for (const ep of sm.spec.endpoints)
      if (!svc.spec.ports.some((p) => p.name === ep.port)) fail(file, `ServiceMonitor port ${ep.port} not on the Service`);
  }
  for (const ing of of("Ingress"))
    for (const r of ing.spec.rules)
      for (const p of r.http.paths) {
        const b = p.backend.service;
        if (b.name !== svc.metadata.name || !svc.spec.ports.some((sp) => sp.name === b.port.name))
          fail(file, `Ingress ${r.host}${p.path} does not point at the Service's ${b.port.name} port`);
      }
  for (const c of pod.spec.topologySpreadConstraints ?? [])
    if (!matches(c.labelSelector?.matchLabels, podLabels)) fail(file, "a topology spread constraint misses the pods");

  // The container: configuration references, probes, drain, security, resources.
  const [ctr] = pod.spec.containers;
  for (const ef of ctr.envFrom ?? [])
    if (ef.configMapRef && ef.configMapRef.name !== cm.metadata.name) fail(file, `envFrom names ConfigMap ${ef.configMapRef.name}`);
  const env = Object.fromEntries((ctr.env ?? []).map((e) => [e.name, e]));
  for (const e of ctr.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref && secret && ref.name === secret.metadata.name && !(ref.key in (secret.data ?? {})) && !ref.optional)
      fail(file, `env ${e.name} wants key ${ref.key} the chart's Secret does not have`);
  }
  const names = (ctr.env ?? []).map((e) => e.name);
  const redisUrl = env.NATTER_REDIS?.value ?? "";
  if (redisUrl.includes("$(REDIS_PASSWORD)") && !(names.indexOf("REDIS_PASSWORD") >= 0 && names.indexOf("REDIS_PASSWORD") < names.indexOf("NATTER_REDIS")))
    fail(file, "NATTER_REDIS uses $(REDIS_PASSWORD) but it is not defined before it");
  if (!cm.data.NATTER_NATS || !env.NATTER_REDIS) fail(file, "NATS and Redis must both be configured");
  const streams = Number(cm.data.NATTER_HISTORY_STREAMS ?? "1");
  if (!Number.isInteger(streams) || streams < 1 || streams > 16)
    fail(file, `NATTER_HISTORY_STREAMS must be 1..16 (got ${cm.data.NATTER_HISTORY_STREAMS})`);
  if (!cm.data.NATTER_REDIS_SENTINEL !== !cm.data.NATTER_REDIS_MASTER)
    fail(file, "NATTER_REDIS_SENTINEL and NATTER_REDIS_MASTER go together");
  if (cm.data.NATTER_NATS_CREDS && cm.data.NATTER_NATS_NKEY_SEED) fail(file, "NATS creds and NKey seed together");
  for (const k of ["NATTER_NATS_CREDS", "NATTER_NATS_NKEY_SEED", "NATTER_NATS_TLS_CA", "NATTER_NATS_TLS_CERT", "NATTER_NATS_TLS_KEY"]) {
    const path = cm.data[k];
    if (path && !(ctr.volumeMounts ?? []).some((m) => path.startsWith(m.mountPath + "/"))) fail(file, `${k} ${path} is not mounted`);
  }
  const keyVar = env.NATTER_JWT_PUBLIC_KEY ?? env.NATTER_JWT_SECRET_FILE;
  if (!env.NATTER_JWT_SECRET && !keyVar) fail(file, "no token verification key");
  if (env.NATTER_JWT_SECRET && env.NATTER_JWT_SECRET_FILE) fail(file, "NATTER_JWT_SECRET and NATTER_JWT_SECRET_FILE together are refused by natter");
  if (keyVar) {
    const path = keyVar.value;
    const mount = (ctr.volumeMounts ?? []).find((m) => path.startsWith(m.mountPath + "/"));
    if (!mount) fail(file, `${path} is not mounted`);
    const vol = (pod.spec.volumes ?? []).find((v) => v.name === mount?.name);
    const item = vol?.secret?.items?.find((i) => mount.mountPath + "/" + i.path === path);
    if (!item) fail(file, `${path}: no Secret item is mounted there`);
    else if (secret && vol.secret.secretName === secret.metadata.name && !(item.key in (secret.data ?? {})))
      fail(file, `${path}: the chart's Secret has no key ${item.key}`);
  }
  for (const [v, want] of Object.entries(cm.data))
    if (/e\+\d+$/.test(want)) fail(file, `ConfigMap ${v}=${want}: a number rendered in exponent notation`);

  const port = (p) => (typeof p === "string" ? ctr.ports.find((x) => x.name === p)?.containerPort : p);
  const probe = (pr, path, what) => {
    if (!pr?.httpGet || pr.httpGet.path !== path || port(pr.httpGet.port) !== 8080)
      fail(file, `${what} must GET ${path} on the http port (8080)`);
  };
  probe(ctr.livenessProbe, "/healthz", "livenessProbe");
  probe(ctr.readinessProbe, "/readyz", "readinessProbe");

  const cmd = ctr.lifecycle?.preStop?.exec?.command ?? [];
  const preStop = cmd[0] === "sleep" ? Number(cmd[1]) : NaN;
  const grace = Number(cm.data.NATTER_DRAIN_GRACE), ttl = Number(cm.data.NATTER_NODE_TTL);
  const budget = pod.spec.terminationGracePeriodSeconds;
  if (!(preStop >= 0)) fail(file, "preStop must be a sleep");
  if (!(budget > preStop + grace + ttl))
    fail(file, `terminationGracePeriodSeconds ${budget} <= preStop ${preStop} + drain grace ${grace} + node ttl ${ttl}`);

  const psc = pod.spec.securityContext ?? {}, sc = ctr.securityContext ?? {};
  if (!(psc.runAsNonRoot || sc.runAsNonRoot)) fail(file, "pods must run as non-root");
  if (sc.readOnlyRootFilesystem !== true) fail(file, "root filesystem must be read-only");
  if (sc.allowPrivilegeEscalation !== false) fail(file, "privilege escalation must be off");
  if (!ctr.resources?.requests?.cpu || !ctr.resources?.requests?.memory) fail(file, "resource requests missing");
  return objs.length;
}

let total = 0;
for (const f of process.argv.slice(2)) {
  const n = await validateFile(f);
  console.log(`validate: ${f}: ${n} objects checked`);
  total += n;
}
if (problems.length) {
  for (const p of problems) console.error(`validate: FAIL ${p}`);
  process.exit(1);
}
console.log(`validate: ${total} objects valid`);
