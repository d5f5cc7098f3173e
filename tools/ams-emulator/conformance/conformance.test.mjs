// Conformance of the Media Services emulator, judged by Microsoft's generated SDKs: @azure/arm-mediaservices
// for ARM, @azure/storage-blob on the SAS URLs the emulator issues, and @azure/eventgrid's
// EventGridDeserializer on every event it delivers (the envelope typed, isSystemEvent for its type, the data
// checked under its wire names, since the deserializer leaves data as sent). Each operation must meet the SDK's own expectations:
// status codes, response models, typed errors.
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
import { fileURLToPath } from "node:url";
import path from "node:path";
import { AzureMediaServices } from "@azure/arm-mediaservices";
import { ContainerClient } from "@azure/storage-blob";
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
  const poller = await to.getBlobClient("dir/video.mp4").beginCopyFromURL(readable.getBlobClient("dir/video.mp4").url);
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

test("every delivered event deserializes with the SDK as a known system event with the data its type carries", { skip: real && "events need an endpoint the service can call" }, async () => {
  const [a] = target.accounts;
  await ensureTransform(a);
  const asset = `conform-ev-${run}`;
  const job = `conform-ev-job-${run}`;
  await target.client.assets.createOrUpdate(target.rg, a, asset, {});
  await target.client.jobs.create(target.rg, a, transform, job, {
    input: { odataType: "#Microsoft.Media.JobInputHttp", files: ["https://media.example/in/movie.mp4"] },
    outputs: [{ odataType: "#Microsoft.Media.JobOutputAsset", assetName: asset }],
    correlationData: { jobId: job },
  });
  const deserializer = new EventGridDeserializer();
  const events = await eventually("the job's Finished event", async () => {
    const all = [];
    for (const d of delivered) all.push(...(await deserializer.deserializeEventGridEvents(d.body)));
    const mine = all.filter((e) => e.subject.endsWith(`/jobs/${job}`));
    return mine.some((e) => e.eventType === "Microsoft.Media.JobFinished") && { all, mine };
  });
  const seen = new Set();
  for (const e of events.all) {
    assert.ok(isSystemEvent(e.eventType, e), `${e.eventType} is a known system event`);
    assert.ok(e.eventTime instanceof Date, "eventTime is typed as a date");
    assert.equal(typeof e.id, "string");
    assert.equal(e.dataVersion.length > 0, true);
    seen.add(e.eventType);
    if (e.eventType === "Microsoft.Media.JobStateChange") {
      assert.ok(["Queued", "Scheduled", "Processing", "Finished", "Canceling", "Canceled", "Error"].includes(e.data.state));
      assert.equal(typeof e.data.correlationData, "object");
    }
    if (e.eventType === "Microsoft.Media.JobFinished" || e.eventType === "Microsoft.Media.JobCanceled") {
      assert.ok(Array.isArray(e.data.outputs), "final events carry outputs");
      for (const o of e.data.outputs) {
        // The deserializer types the envelope; data stays as sent, so it is checked under its wire names.
        assert.equal(o["@odata.type"], "#Microsoft.Media.JobOutputAsset", "outputs carry their discriminator");
        assert.equal(typeof o.progress, "number");
      }
    }
    if (e.eventType === "Microsoft.Media.JobOutputProgress") {
      assert.equal(typeof e.data.progress, "number");
      assert.equal(typeof e.data.jobCorrelationData, "object");
    }
  }
  for (const d of delivered) {
    assert.equal(d.headers["aeg-event-type"], "Notification");
    assert.match(d.headers["content-type"], /^application\/json/);
  }
  for (const t of ["JobStateChange", "JobScheduled", "JobProcessing", "JobFinished", "JobOutputStateChange", "JobOutputFinished"]) {
    assert.ok(seen.has(`Microsoft.Media.${t}`), `a ${t} event was delivered`);
  }
});
