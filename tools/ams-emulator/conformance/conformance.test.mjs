// Conformance of the Media Services emulator, judged by Microsoft's generated SDKs: @azure/arm-mediaservices
// for ARM, @azure/storage-blob on the SAS URLs the emulator issues, and @azure/eventgrid on every event it
// delivers: EventGridDeserializer types the envelope, isSystemEvent knows its type, and the data is checked
// against the model the SDK declares for that type (its TypeScript interface in the package's .d.ts files and
// the generated mapper with the same properties under their wire names: every required property present,
// every property of the declared type, enum values among the declared ones, nothing the model does not have).
// The deserializer leaves data as sent, so without that check a misspelt or mistyped field would pass. Each
// operation must meet the SDK's own expectations: status codes, response models, typed errors.
//
// Run by `./dev test` as `node --test tools/ams-emulator/conformance/`. Without configuration it starts
// target/debug/ams-emulator (or AMS_EMULATOR_BIN) on a free port. To judge a real AMS-compatible service,
// set AMS_CONFORMANCE_ARM_ENDPOINT, AMS_CONFORMANCE_SUBSCRIPTION, AMS_CONFORMANCE_RESOURCE_GROUP and
// AMS_CONFORMANCE_ACCOUNTS (two account names, comma-separated), with credentials for
// @azure/identity's DefaultAzureCredential (e.g. AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET).
// The event checks need an endpoint the service can call, so they run against the emulator only.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { once } from "node:events";
import { randomUUID, randomBytes } from "node:crypto";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { AzureMediaServices } from "@azure/arm-mediaservices";
import { ContainerClient, ContainerSASPermissions, generateBlobSASQueryParameters } from "@azure/storage-blob";
import { EventGridDeserializer, isSystemEvent } from "@azure/eventgrid";
import { DefaultAzureCredential } from "@azure/identity";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const real = Boolean(process.env.AMS_CONFORMANCE_ARM_ENDPOINT);
const run = randomUUID().slice(0, 8);
let target; // { client, rg, accounts: [a, b] }
let emulator;
let receiver;
const delivered = []; // raw bodies POSTed to the event endpoint

/** Starts the emulator and resolves with its base URL. */
async function startEmulator(eventEndpoint) {
  const bin = process.env.AMS_EMULATOR_BIN ?? path.join(root, "target/debug/ams-emulator");
  const child = spawn(bin, [
    "--port", "0", "--time-scale", "50", "--copy-ms", "2000",
    "--account", "conformeast:eastus", "--account", "conformwest:westus",
    "--event-endpoint", eventEndpoint,
  ], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  for await (const chunk of child.stdout) {
    out += chunk;
    const m = out.match(/listening on (http:\/\/\S+)/);
    if (m) {
      child.stdout.resume();
      return { child, url: m[1] };
    }
  }
  throw new Error(`the emulator exited before listening: ${out}`);
}

before(async () => {
  if (real) {
    const credential = new DefaultAzureCredential();
    const client = new AzureMediaServices(credential, process.env.AMS_CONFORMANCE_SUBSCRIPTION, {
      endpoint: process.env.AMS_CONFORMANCE_ARM_ENDPOINT,
    });
    const accounts = (process.env.AMS_CONFORMANCE_ACCOUNTS ?? "").split(",").map((a) => a.trim()).filter(Boolean);
    assert.equal(accounts.length, 2, "AMS_CONFORMANCE_ACCOUNTS must name two accounts");
    target = { client, rg: process.env.AMS_CONFORMANCE_RESOURCE_GROUP, accounts };
    return;
  }
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      delivered.push({ headers: req.headers, body });
      res.writeHead(200).end();
    });
  });
  receiver.listen(0, "127.0.0.1");
  await once(receiver, "listening");
  emulator = await startEmulator(`http://127.0.0.1:${receiver.address().port}/events`);
  // The emulator needs no token; a placeholder credential satisfies the SDK, and the bearer policy (which
  // refuses plain http) is removed.
  const credential = { getToken: async () => ({ token: "emulator", expiresOnTimestamp: Date.now() + 3600_000 }) };
  const client = new AzureMediaServices(credential, "00000000-0000-0000-0000-000000000000", { endpoint: emulator.url });
  client.pipeline.removePolicy({ name: "bearerTokenAuthenticationPolicy" });
  client.pipeline.addPolicy({ name: "emulatorOverHttp", sendRequest: (request, next) => {
    request.allowInsecureConnection = true;
    return next(request);
  } });
  target = { client, rg: "media-rg", accounts: ["conformeast", "conformwest"] };
});

after(async () => {
  emulator?.child.kill();
  receiver?.close();
});

/** Polls `check` until it returns a truthy value, for at most `ms`. */
async function eventually(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Asserts that `promise` rejects with the SDK's RestError of `status` (and `code` when given). */
async function rejectsWith(promise, status, code) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.name, "RestError", `not a RestError: ${e}`);
    assert.equal(e.statusCode, status, e.message);
    if (code) assert.equal(e.code, code, e.message);
    return true;
  });
}

const transform = `conform-${run}`;
const preset = { odataType: "#Microsoft.Media.BuiltInStandardEncoderPreset", presetName: "AdaptiveStreaming" };
const inHours = (h) => new Date(Date.now() + h * 3600_000);

async function ensureTransform(account) {
  return target.client.transforms.createOrUpdate(target.rg, account, transform, { outputs: [{ preset }] });
}

async function sasContainer(account, asset, permissions) {
  const sas = await target.client.assets.listContainerSas(target.rg, account, asset, { permissions, expiryTime: inHours(1) });
  assert.ok(Array.isArray(sas.assetContainerSasUrls) && sas.assetContainerSasUrls.length >= 1, "SAS URLs");
  return new ContainerClient(sas.assetContainerSasUrls[0]);
}

test("transforms are created, read back and missing ones are typed 404s", async () => {
  const [a] = target.accounts;
  const created = await ensureTransform(a);
  assert.equal(created.name, transform);
  assert.equal(created.outputs[0].preset.odataType, preset.odataType);
  const read = await target.client.transforms.get(target.rg, a, transform);
  assert.equal(read.outputs[0].preset.presetName, "AdaptiveStreaming");
  await rejectsWith(target.client.transforms.get(target.rg, a, `missing-${run}`), 404);
});

test("jobs are created, read with a wrapped input, listed with $filter and cancelled", async () => {
  const [a] = target.accounts;
  await ensureTransform(a);
  const asset = `conform-out-${run}`;
  const made = await target.client.assets.createOrUpdate(target.rg, a, asset, {});
  assert.ok(made.assetId, "the asset has an id");
  assert.equal((await target.client.assets.get(target.rg, a, asset)).name, asset);
  const job = `conform-job-${run}`;
  const input = { odataType: "#Microsoft.Media.JobInputHttp", baseUri: "https://media.example/in/?sv=1&sig=secret", files: ["movie.mp4"] };
  const created = await target.client.jobs.create(target.rg, a, transform, job, {
    input,
    outputs: [{ odataType: "#Microsoft.Media.JobOutputAsset", assetName: asset }],
    priority: "High",
    correlationData: { jobId: job },
  });
  assert.equal(created.name, job);
  assert.equal(created.state, "Queued");
  assert.equal(created.priority, "High");
  assert.ok(created.created instanceof Date, "created is a date");
  assert.deepEqual(created.correlationData, { jobId: job });
  assert.equal(created.outputs[0].assetName, asset);

  const read = await target.client.jobs.get(target.rg, a, transform, job);
  assert.equal(read.input.odataType, "#Microsoft.Media.JobInputs", "GET wraps the input");
  assert.equal(read.input.inputs.length, 1);
  assert.equal(read.input.inputs[0].baseUri, "https://media.example/in/", "the query string is not returned");

  const listed = [];
  for await (const j of target.client.jobs.list(target.rg, a, transform, { filter: `name eq '${job}'` })) listed.push(j.name);
  assert.deepEqual(listed, [job]);

  // A create on a taken name and one with a missing output asset are typed errors.
  await assert.rejects(target.client.jobs.create(target.rg, a, transform, job, {
    input, outputs: [{ odataType: "#Microsoft.Media.JobOutputAsset", assetName: asset }],
  }), (e) => e.name === "RestError" && e.statusCode >= 400 && e.statusCode < 500);
  await assert.rejects(target.client.jobs.create(target.rg, a, transform, `conform-orphan-${run}`, {
    input, outputs: [{ odataType: "#Microsoft.Media.JobOutputAsset", assetName: `missing-${run}` }],
  }), (e) => e.name === "RestError" && e.statusCode === 400 && /is not found under account/.test(e.message));
  await rejectsWith(target.client.jobs.get(target.rg, a, transform, `missing-${run}`), 404);

  await target.client.jobs.cancelJob(target.rg, a, transform, job);
  const canceled = await eventually("the job to be cancelled", async () => {
    const j = await target.client.jobs.get(target.rg, a, transform, job);
    return ["Canceled", "Finished"].includes(j.state) && j;
  });
  assert.ok(canceled.lastModified instanceof Date);
});

test("content key policies, streaming policies and locators with explicit ids and keys", async () => {
  const [a] = target.accounts;
  const asset = `conform-vod-${run}`;
  await target.client.assets.createOrUpdate(target.rg, a, asset, {});
  const container = await sasContainer(a, asset, "ReadWrite");
  for (const name of ["video.ism", "video_1000kbps.mp4"]) {
    await container.getBlockBlobClient(name).upload("x", 1);
  }

  const signingKey = randomBytes(32);
  const ckp = `conform-ckp-${run}`;
  const policy = await target.client.contentKeyPolicies.createOrUpdate(target.rg, a, ckp, {
    options: [{
      name: "token",
      configuration: { odataType: "#Microsoft.Media.ContentKeyPolicyClearKeyConfiguration" },
      restriction: {
        odataType: "#Microsoft.Media.ContentKeyPolicyTokenRestriction",
        issuer: "urn:conformance", audience: "urn:conformance:viewers", restrictionTokenType: "Jwt",
        primaryVerificationKey: { odataType: "#Microsoft.Media.ContentKeyPolicySymmetricTokenKey", keyValue: signingKey },
      },
    }],
  });
  assert.ok(policy.policyId, "the policy has an id");
  const secrets = await target.client.contentKeyPolicies.getPolicyPropertiesWithSecrets(target.rg, a, ckp);
  const key = secrets.options[0].restriction.primaryVerificationKey.keyValue;
  assert.deepEqual(Buffer.from(key), signingKey, "the signing key reads back as the same bytes");

  const sp = `conform-sp-${run}`;
  const created = await target.client.streamingPolicies.create(target.rg, a, sp, {
    defaultContentKeyPolicyName: ckp,
    envelopeEncryption: {
      enabledProtocols: { download: false, dash: true, hls: true, smoothStreaming: true },
      contentKeys: { defaultKey: { label: "aesDefaultKey" } },
    },
  });
  assert.equal(created.name, sp);
  assert.equal((await target.client.streamingPolicies.get(target.rg, a, sp)).defaultContentKeyPolicyName, ckp);

  const locatorId = randomUUID();
  const keyId = randomUUID();
  const value = randomBytes(16).toString("base64");
  const locator = await target.client.streamingLocators.create(target.rg, a, asset, {
    assetName: asset, streamingPolicyName: sp, streamingLocatorId: locatorId,
    contentKeys: [{ id: keyId, labelReferenceInStreamingPolicy: "aesDefaultKey", value }],
  });
  assert.equal(locator.streamingLocatorId, locatorId);
  assert.equal(locator.contentKeys[0].id, keyId);
  assert.equal(locator.contentKeys[0].value, undefined, "key values are never in the locator");
  const keys = await target.client.streamingLocators.listContentKeys(target.rg, a, asset);
  assert.deepEqual(keys.contentKeys.map((k) => [k.id, k.value]), [[keyId, value]]);
  const paths = await target.client.streamingLocators.listPaths(target.rg, a, asset);
  assert.ok(paths.streamingPaths.length > 0, "an asset with a manifest has streaming paths");
  for (const p of paths.streamingPaths) {
    assert.equal(p.encryptionScheme, "EnvelopeEncryption");
    assert.ok(p.paths.every((x) => x.startsWith(`/${locatorId}/video.ism/manifest`)), JSON.stringify(p.paths));
  }
  assert.deepEqual(paths.downloadPaths, []);
  await rejectsWith(target.client.streamingLocators.get(target.rg, a, `missing-${run}`), 404);
});

test("blobs on the issued SAS URLs: upload, list with and without copy state, cross-account copy, properties", async () => {
  const [a, b] = target.accounts;
  const source = `conform-src-${run}`;
  const dest = `conform-dst-${run}`;
  await target.client.assets.createOrUpdate(target.rg, a, source, {});
  await target.client.assets.createOrUpdate(target.rg, b, dest, {});
  const from = await sasContainer(a, source, "ReadWrite");
  const payload = randomBytes(4096);
  const uploaded = await from.getBlockBlobClient("dir/video.mp4").upload(payload, payload.length);
  assert.ok(uploaded.etag, "upload answers an ETag");

  const readable = await sasContainer(a, source, "Read");
  const to = await sasContainer(b, dest, "ReadWrite");
  // The poller waits 15 s between polls by default; the emulator's copies land in milliseconds.
  const poller = await to.getBlobClient("dir/video.mp4").beginCopyFromURL(readable.getBlobClient("dir/video.mp4").url, { intervalInMs: 200 });
  const copied = await poller.pollUntilDone();
  assert.equal(copied.copyStatus, "success");
  const props = await to.getBlobClient("dir/video.mp4").getProperties();
  assert.equal(props.contentLength, payload.length);
  assert.equal(props.copyStatus, "success");
  assert.equal(props.blobType, "BlockBlob");
  assert.ok(!String(props.copySource).includes("sig="), "the source SAS is not echoed");

  const plain = [];
  for await (const item of to.listBlobsFlat()) plain.push(item);
  assert.deepEqual(plain.map((i) => i.name), ["dir/video.mp4"]);
  assert.equal(plain[0].properties.copyStatus, undefined, "no copy state without include=copy");
  const withCopy = [];
  for await (const item of to.listBlobsFlat({ includeCopy: true })) withCopy.push(item);
  assert.equal(withCopy[0].properties.copyStatus, "success");
  assert.equal(withCopy[0].properties.contentLength, payload.length);

  const downloaded = await to.getBlobClient("dir/video.mp4").downloadToBuffer();
  assert.deepEqual(downloaded, payload);
  await rejectsWith(to.getBlobClient("missing.mp4").getProperties(), 404);
});

// The SDK's own description of each system event's data. `SystemEventNameToEventData` in predicates.d.ts
// names the TypeScript interface of each event type's data; generated/models/index.d.ts declares those
// interfaces; generated/models/mappers.js is the generated model of the same interfaces with each property's
// wire name, type, requiredness and allowed enum values, and the discriminators of polymorphic ones.
const eventgridDist = path.join(path.dirname(createRequire(import.meta.url).resolve("@azure/eventgrid/package.json")), "dist/esm");
const sdkTypes = {
  eventData: Object.fromEntries(
    [...readFileSync(path.join(eventgridDist, "predicates.d.ts"), "utf8").matchAll(/"(Microsoft\.Media\.Job\w+)": (\w+);/g)]
      .map((m) => [m[1], m[2]]),
  ),
  interfaces: declaredInterfaces(readFileSync(path.join(eventgridDist, "generated/models/index.d.ts"), "utf8")),
  mappers: await import(pathToFileURL(path.join(eventgridDist, "generated/models/mappers.js"))),
};

/** The interfaces of a .d.ts file: name -> { parents, props: name -> { optional, type } } (top-level members). */
function declaredInterfaces(dts) {
  const found = new Map();
  for (const m of dts.matchAll(/export interface (\w+)(?: extends ([\w, ]+))? \{\n/g)) {
    const props = new Map();
    let depth = 1;
    for (const line of dts.slice(m.index + m[0].length).split("\n")) {
      if (depth === 1) {
        const p = line.match(/^\s*(?:readonly\s+)?([A-Za-z_$][\w$]*)(\?)?:\s*(.*?);?$/);
        if (p) props.set(p[1], { optional: Boolean(p[2]), type: p[3] });
      }
      depth += (line.match(/\{/g) ?? []).length - (line.match(/\}/g) ?? []).length;
      if (depth <= 0) break;
    }
    found.set(m[1], { parents: m[2] ? m[2].split(",").map((x) => x.trim()) : [], props });
  }
  return found;
}

/** Every member of a declared interface, its parents' included. */
function declaredMembers(name) {
  const declared = sdkTypes.interfaces.get(name);
  assert.ok(declared, `the SDK declares interface ${name}`);
  const members = new Map();
  for (const parent of declared.parents) for (const [k, v] of declaredMembers(parent)) members.set(k, v);
  for (const [k, v] of declared.props) members.set(k, v);
  return members;
}

/** The generated mapper of a class, checked to have exactly the members its interface declares, and which
 * members are required: those the mapper requires and those the interface does not mark optional (the two
 * differ: `MediaJobOutputStateChangeEventData.output` is required by its interface only). */
function modelOf(className) {
  const mapper = sdkTypes.mappers[className];
  assert.ok(mapper?.type?.modelProperties, `the SDK has a model for ${className}`);
  const declared = declaredMembers(className);
  const modelled = mapper.type.modelProperties;
  assert.deepEqual(Object.keys(modelled).sort(), [...declared.keys()].sort(), `${className}: the model has the declared members`);
  const required = new Set(Object.keys(modelled).filter((m) => modelled[m].required || !declared.get(m).optional));
  return { mapper, required };
}

/** Where `value` departs from the SDK's mapper `type`, as "path: why" lines. */
function departures(value, type, at) {
  const problems = [];
  const wrong = (why) => problems.push(`${at}: ${why} (${JSON.stringify(value)})`);
  switch (type.name) {
    case "String":
      if (typeof value !== "string") wrong("not a string");
      break;
    case "Number":
      if (typeof value !== "number" || !Number.isFinite(value)) wrong("not a number");
      break;
    case "Boolean":
      if (typeof value !== "boolean") wrong("not a boolean");
      break;
    case "DateTime":
      if (typeof value !== "string" || Number.isNaN(Date.parse(value))) wrong("not a date-time");
      break;
    case "Enum":
      if (!type.allowedValues.includes(value)) wrong(`not one of ${type.allowedValues.join(", ")}`);
      break;
    case "Sequence":
      if (!Array.isArray(value)) wrong("not an array");
      else value.forEach((v, i) => problems.push(...departures(v, type.element.type, `${at}[${i}]`)));
      break;
    case "Dictionary":
      if (typeof value !== "object" || value === null || Array.isArray(value)) wrong("not an object");
      else for (const [k, v] of Object.entries(value)) problems.push(...departures(v, type.value.type, `${at}.${k}`));
      break;
    case "Composite": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        wrong("not an object");
        break;
      }
      let { mapper, required } = modelOf(type.className);
      const discriminator = mapper.type.polymorphicDiscriminator;
      if (discriminator) {
        // A polymorphic model: the discriminator's value picks the subtype whose model applies.
        const kind = value[discriminator.serializedName.replace(/\\\./g, ".")];
        const subtype = sdkTypes.mappers.discriminators[`${mapper.type.uberParent}.${kind}`];
        if (!subtype) {
          wrong(`no ${mapper.type.uberParent} subtype is discriminated by ${JSON.stringify(kind)}`);
          break;
        }
        ({ mapper, required } = modelOf(subtype.type.className));
      }
      const wireNames = new Set();
      for (const [member, property] of Object.entries(mapper.type.modelProperties)) {
        const wire = property.serializedName.replace(/\\\./g, ".");
        wireNames.add(wire);
        const v = value[wire];
        // An optional member may be absent or null (the service's samples send "error": null).
        if (v === undefined || v === null) {
          if (required.has(member) && !property.nullable) problems.push(`${at}.${wire}: required by ${mapper.type.className}.${member}, missing`);
          continue;
        }
        problems.push(...departures(v, property.type, `${at}.${wire}`));
      }
      if (!mapper.type.additionalProperties) {
        for (const key of Object.keys(value)) {
          if (!wireNames.has(key)) problems.push(`${at}.${key}: not a member of ${mapper.type.className}`);
        }
      }
      break;
    }
    default:
      wrong(`the check does not know mapper type ${type.name}`);
  }
  return problems;
}

/** Where an event's data departs from the model the SDK declares for its type. */
function dataDepartures(event) {
  const dataType = sdkTypes.eventData[event.eventType];
  if (!dataType) return [`${event.eventType}: the SDK declares no data type for it`];
  return departures(event.data, { name: "Composite", className: dataType }, "data");
}

test("a user-delegation SAS signed by the SDK with a key the storage issued opens its container, and only it", { skip: real && "a user delegation key needs an Entra ID token" }, async () => {
  const [a] = target.accounts;
  const asset = `conform-ud-${run}`;
  await target.client.assets.createOrUpdate(target.rg, a, asset, {});
  const writable = await sasContainer(a, asset, "ReadWrite");
  await writable.getBlockBlobClient("v.mp4").upload("abc", 3);
  // http://host/blob/{storage}/{container}: the service endpoint and the account name.
  const url = new URL(writable.url);
  const [, , storage, container] = url.pathname.split("/");
  const second = (d) => new Date(Math.floor(d.getTime() / 1000) * 1000);
  const [startsOn, expiresOn] = [second(new Date(Date.now() - 60_000)), second(inHours(24))];
  const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
  const res = await fetch(`${url.origin}/blob/${storage}/?restype=service&comp=userdelegationkey`, {
    method: "POST",
    headers: { "x-ms-version": "2026-04-06", "content-type": "application/xml" },
    body: `<?xml version="1.0" encoding="utf-8"?><KeyInfo><Start>${iso(startsOn)}</Start><Expiry>${iso(expiresOn)}</Expiry></KeyInfo>`,
  });
  assert.equal(res.status, 200, await res.clone().text());
  const xml = await res.text();
  const field = (tag) => xml.match(new RegExp(`<${tag}>([^<]*)</${tag}>`))?.[1];
  const key = {
    signedObjectId: field("SignedOid"),
    signedTenantId: field("SignedTid"),
    signedStartsOn: new Date(field("SignedStart")),
    signedExpiresOn: new Date(field("SignedExpiry")),
    signedService: field("SignedService"),
    signedVersion: field("SignedVersion"),
    value: field("Value"),
  };
  assert.equal(key.signedVersion, "2026-04-06");
  const sas = (permissions, name = container) =>
    generateBlobSASQueryParameters(
      { containerName: name, permissions: ContainerSASPermissions.parse(permissions), startsOn, expiresOn: inHours(8) },
      key,
      storage,
    ).toString();
  const readable = new ContainerClient(`${url.origin}/blob/${storage}/${container}?${sas("rl")}`);
  const names = [];
  for await (const item of readable.listBlobsFlat()) names.push(item.name);
  assert.deepEqual(names, ["v.mp4"]);
  assert.equal((await readable.getBlobClient("v.mp4").downloadToBuffer()).toString(), "abc");
  await rejectsWith(readable.getBlockBlobClient("w.mp4").upload("x", 1), 403, "AuthorizationPermissionMismatch");
  const signedForAnother = new ContainerClient(`${url.origin}/blob/${storage}/${container}?${sas("rl", "another")}`);
  await rejectsWith(signedForAnother.getBlobClient("v.mp4").getProperties(), 403);
  const forged = new ContainerClient(
    `${url.origin}/blob/${storage}/${container}?${generateBlobSASQueryParameters(
      { containerName: container, permissions: ContainerSASPermissions.parse("rl"), startsOn, expiresOn: inHours(8) },
      { ...key, value: Buffer.alloc(32, 7).toString("base64") },
      storage,
    ).toString()}`,
  );
  await rejectsWith(forged.getBlobClient("v.mp4").getProperties(), 403);
});

test("the model check refuses data with a misspelt, mistyped, missing or extra field", () => {
  const good = {
    eventType: "Microsoft.Media.JobFinished",
    data: {
      previousState: "Processing", state: "Finished", correlationData: { jobId: "j" },
      outputs: [{ "@odata.type": "#Microsoft.Media.JobOutputAsset", assetName: "a", error: null, label: "l", progress: 100, state: "Finished" }],
    },
  };
  assert.deepEqual(dataDepartures(good), []);
  const broken = (change) => {
    const e = structuredClone(good);
    change(e.data);
    return dataDepartures(e);
  };
  assert.match(broken((d) => { d.previousstate = d.previousState; delete d.previousState; }).join("\n"), /previousState: required.*\n.*previousstate: not a member/);
  assert.match(broken((d) => { d.outputs[0].progress = "100"; }).join(), /outputs\[0\]\.progress: not a number/);
  assert.match(broken((d) => { d.state = "Done"; }).join(), /data\.state: not one of/);
  assert.match(broken((d) => { d.correlationData = { jobId: 1 }; }).join(), /correlationData\.jobId: not a string/);
  assert.match(broken((d) => { delete d.outputs[0]["@odata.type"]; }).join(), /no MediaJobOutput subtype/);
  assert.match(broken((d) => { delete d.outputs[0].assetName; }).join(), /outputs\[0\]\.assetName: required/);
  assert.match(broken((d) => { d.outputs[0].error = { code: "ServiceError", message: "m", category: "Service", retry: "Maybe", details: [] }; }).join(), /error\.retry: not one of/);
});

/** Sets an emulated account's fault through the control API. */
async function setFault(account, fault) {
  const res = await fetch(`${emulator.url}/_emulator/accounts/${account}/fault`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(fault),
  });
  assert.equal(res.status, 200, await res.text());
}

async function createJob(account, name) {
  const asset = `${name}-out`;
  await target.client.assets.createOrUpdate(target.rg, account, asset, {});
  await target.client.jobs.create(target.rg, account, transform, name, {
    input: { odataType: "#Microsoft.Media.JobInputHttp", files: ["https://media.example/in/movie.mp4"] },
    outputs: [{ odataType: "#Microsoft.Media.JobOutputAsset", assetName: asset }],
    correlationData: { jobId: name },
  });
}

async function jobState(account, name) {
  return (await target.client.jobs.get(target.rg, account, transform, name)).state;
}

/** The state a job or output is in once the specific event of `eventType` is raised. */
const stateOf = { Scheduled: "Scheduled", Processing: "Processing", Canceling: "Canceling", Finished: "Finished", Canceled: "Canceled", Errored: "Error" };

test("every delivered event deserializes with the SDK as a known system event with the data its type declares", { skip: real && "events need an endpoint the service can call" }, async () => {
  const [a, b] = target.accounts;
  await ensureTransform(a);
  await ensureTransform(b);
  // One job of each ending: Finished in a; Canceled in b, held in Scheduled by a stall so the cancel cannot
  // come too late; Error in b, whose jobs fail at the end of processing.
  const finished = `conform-ev-done-${run}`;
  const canceled = `conform-ev-cancel-${run}`;
  const errored = `conform-ev-error-${run}`;
  await createJob(a, finished);
  await setFault(b, { mode: "stall" });
  await createJob(b, canceled);
  await eventually("the job to be held in Scheduled", async () => (await jobState(b, canceled)) === "Scheduled");
  await target.client.jobs.cancelJob(target.rg, b, transform, canceled);
  await eventually("the job to be cancelled", async () => (await jobState(b, canceled)) === "Canceled");
  await setFault(b, { mode: "fail-jobs" });
  await createJob(b, errored);
  await eventually("the job to fail", async () => (await jobState(b, errored)) === "Error");
  await setFault(b, { mode: "healthy" });
  await eventually("the first job to finish", async () => (await jobState(a, finished)) === "Finished");

  const deserializer = new EventGridDeserializer();
  const ends = { [finished]: "Microsoft.Media.JobFinished", [canceled]: "Microsoft.Media.JobCanceled", [errored]: "Microsoft.Media.JobErrored" };
  const all = await eventually("each job's final event", async () => {
    const events = [];
    for (const d of delivered) events.push(...(await deserializer.deserializeEventGridEvents(d.body)));
    const done = Object.entries(ends).every(([job, type]) => events.some((e) => e.subject.endsWith(`/jobs/${job}`) && e.eventType === type));
    return done && events;
  });

  const seen = new Set();
  const problems = [];
  for (const e of all) {
    assert.ok(isSystemEvent(e.eventType, e), `${e.eventType} is a known system event`);
    assert.ok(e.eventTime instanceof Date, "eventTime is typed as a date");
    assert.equal(typeof e.id, "string");
    assert.equal(e.dataVersion.length > 0, true);
    seen.add(e.eventType);
    problems.push(...dataDepartures(e).map((p) => `${e.eventType} ${e.subject}: ${p}`));
    // What the model cannot say: the specific events carry the state they are named after, and output
    // events report their output, with an error on failed outputs.
    const kind = e.eventType.replace(/^Microsoft\.Media\.Job(Output)?/, "");
    const output = e.eventType.startsWith("Microsoft.Media.JobOutput");
    if (stateOf[kind]) {
      assert.equal(output ? e.data.output.state : e.data.state, stateOf[kind], `${e.eventType} carries its state`);
    }
    const outputs = output ? (e.data.output ? [e.data.output] : []) : (e.data.outputs ?? []);
    for (const o of outputs) {
      if (o.state === "Error") assert.ok(o.error?.code, `${e.eventType}: a failed output carries its error`);
      if (o.state === "Finished") assert.equal(o.progress, 100, `${e.eventType}: a finished output is at 100`);
    }
    const job = e.subject.split("/jobs/")[1];
    if (ends[job]) {
      const correlation = e.data.correlationData ?? e.data.jobCorrelationData;
      assert.deepEqual(correlation, { jobId: job }, `${e.eventType} carries the job's correlation data`);
    }
  }
  assert.deepEqual(problems, [], "every event's data is as the SDK declares its type");
  for (const d of delivered) {
    assert.equal(d.headers["aeg-event-type"], "Notification");
    assert.match(d.headers["content-type"], /^application\/json/);
  }
  // Every job event type the SDK knows was delivered and checked.
  const jobEvents = Object.keys(sdkTypes.eventData);
  assert.ok(jobEvents.length >= 15, `the SDK declares the job events: ${jobEvents}`);
  assert.deepEqual(jobEvents.filter((t) => !seen.has(t)), [], "a delivered event of every job event type");
});
