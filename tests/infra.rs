//! The deployment template (`infra/`) against what the handler reads (`config::SETTINGS`) and the function
//! folders: every setting the handler needs is produced, the accounts setting is one the handler accepts, and
//! every Media Services account gets its Event Grid subscription and its Traffic Manager endpoints.
//!
//! They also check what keeps the deployment least-privileged: every secret in the Key Vault and only Key Vault
//! references in the app settings, the roles of the app identity, separate function keys for the client and
//! the operator API, optional Entra ID, the alert path to a person, and the job-events topic.
//!
//! The Bicep is read as text. `infra/main.bicep` keeps the app settings in four blocks that these tests find
//! by name (`hostSettings`, `handlerSettings`, `optionalHandlerSettings`, `secretHandlerSettings`), one
//! setting per line.

use ams_failover::config::{Need, Settings, SETTINGS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn main_bicep() -> String {
    read("infra/main.bicep")
}

/// Lines of Bicep without whole-line comments, trimmed.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")).collect()
}

/// The text from the line that starts with `opener` to the bracket that closes the one it opens.
fn block<'a>(text: &'a str, opener: &str) -> &'a str {
    let start = text
        .lines()
        .scan(0usize, |offset, line| {
            let here = *offset;
            *offset += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| line.trim_start().starts_with(opener))
        .map(|(offset, line)| offset + (line.len() - line.trim_start().len()))
        .unwrap_or_else(|| panic!("no line starting with {opener:?}"));
    closing(text, start, start, opener)
}

/// Like [`block`], but from the line that starts with `opener` to the brace that closes the first `{` on or
/// after it, for declarations with a condition (`= if (...) {`).
fn braced<'a>(text: &'a str, opener: &str) -> &'a str {
    let start =
        text.find(&format!("\n{opener}")).map(|i| i + 1).unwrap_or_else(|| panic!("no line starting with {opener:?}"));
    let brace = start + text[start..].find('{').unwrap_or_else(|| panic!("{opener:?} opens no brace"));
    closing(text, start, brace, opener)
}

/// `text[start..]` up to the bracket that closes the first one at or after `from`.
fn closing<'a>(text: &'a str, start: usize, from: usize, opener: &str) -> &'a str {
    let mut depth = 0i32;
    let mut opened = false;
    let mut in_string = false;
    let mut in_comment = false;
    let mut previous = ' ';
    for (i, c) in text[from..].char_indices() {
        let slash_slash = previous == '/' && c == '/';
        previous = c;
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        match c {
            '/' if slash_slash && !in_string => in_comment = true,
            '\'' => in_string = !in_string,
            '{' | '(' | '[' if !in_string => {
                depth += 1;
                opened = true;
            }
            '}' | ')' | ']' if !in_string => {
                depth -= 1;
                if opened && depth == 0 {
                    return &text[start..=from + i];
                }
            }
            _ => {}
        }
    }
    panic!("{opener:?} is never closed")
}

fn is_setting_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `NAME: value` lines directly inside an object block, as name -> value text.
fn object_entries(block: &str) -> BTreeMap<String, String> {
    let body = &block[block.find('{').expect("an object") + 1..block.rfind('}').expect("an object")];
    code_lines(body)
        .into_iter()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            is_setting_name(key.trim()).then(|| (key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The settings set only when given: lines `empty(param) ? {} : { NAME: param }`, as name -> param.
fn optional_entries(main: &str) -> BTreeMap<String, String> {
    conditional_entries(main, "var optionalHandlerSettings = union(")
}

/// The secret settings, which go to the Key Vault: lines `empty(param) ? {} : { NAME: param }` of
/// `secretHandlerSettings`, as name -> param.
fn secret_entries(main: &str) -> BTreeMap<String, String> {
    conditional_entries(main, "var secretHandlerSettings = union(")
}

fn conditional_entries(main: &str, opener: &str) -> BTreeMap<String, String> {
    let union = block(main, opener);
    code_lines(union)
        .into_iter()
        // `empty(p) ? {} : json(p)` lines hold settings named at deployment (mediaSecrets); they have no name here.
        .filter(|l| l.starts_with("empty(") && l.contains("? {} : {"))
        .map(|line| {
            let param = line["empty(".len()..line.find(')').expect("empty(param)")].trim().to_owned();
            let object = &line[line.rfind('{').expect("{ NAME: param }") + 1..line.rfind('}').expect("}")];
            let (name, value) = object.split_once(':').expect("NAME: param");
            assert_eq!(value.trim(), param, "{line:?}: the setting must take the value of the parameter it tests");
            (name.trim().to_owned(), param)
        })
        .collect()
}

/// Declared parameters: name -> (type, default text if any).
fn params(text: &str) -> BTreeMap<String, (String, Option<String>)> {
    code_lines(text)
        .into_iter()
        .filter_map(|l| l.strip_prefix("param "))
        .map(|rest| {
            let (decl, default) = match rest.split_once('=') {
                Some((d, v)) => (d, Some(v.trim().to_owned())),
                None => (rest, None),
            };
            let mut words = decl.split_whitespace();
            let name = words.next().expect("param name").to_owned();
            let ty = words.next().expect("param type").to_owned();
            (name, (ty, default))
        })
        .collect()
}

fn handler_settings(main: &str) -> BTreeMap<String, String> {
    object_entries(block(main, "var handlerSettings = {"))
}

fn host_settings(main: &str) -> BTreeMap<String, String> {
    object_entries(block(main, "var hostSettings = {"))
}

/// Every name the template can put in the app settings, always or when its parameter is given (secrets as
/// Key Vault references).
fn template_setting_names(main: &str) -> BTreeSet<String> {
    handler_settings(main)
        .into_keys()
        .chain(optional_entries(main).into_keys())
        .chain(secret_entries(main).into_keys())
        .collect()
}

/// Whether a setting's name says it holds a secret.
fn looks_secret(name: &str) -> bool {
    ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD"].iter().any(|s| name.ends_with(s))
}

/// The parameters declared with `@secure()` on the line before.
fn secure_params(text: &str) -> BTreeSet<String> {
    let lines = code_lines(text);
    lines
        .windows(2)
        .filter(|w| w[0] == "@secure()")
        .filter_map(|w| w[1].strip_prefix("param ").and_then(|r| r.split_whitespace().next()).map(str::to_owned))
        .collect()
}

/// Folders at the repository root whose function.json has an HTTP trigger.
fn http_functions() -> Vec<String> {
    functions_with_binding("httpTrigger")
}

/// Folders at the repository root whose function.json has a binding of this type.
fn functions_with_binding(binding_type: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root()).expect("repository root") {
        let dir = entry.expect("entry").path();
        let function_json = dir.join("function.json");
        if !function_json.is_file() {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&function_json).expect("function.json")).expect("json");
        let has = json["bindings"].as_array().into_iter().flatten().any(|b| b["type"] == binding_type);
        if has {
            found.push(dir.file_name().and_then(|n| n.to_str()).expect("folder name").to_owned());
        }
    }
    found.sort();
    found
}

/// A `module <symbol> '<path>' = ...` declaration: its full block.
fn module_block<'a>(main: &'a str, symbol: &str) -> &'a str {
    block(main, &format!("module {symbol} "))
}

fn modules_of(main: &str, path: &str) -> Vec<String> {
    code_lines(main)
        .into_iter()
        .filter(|l| l.starts_with("module ") && l.contains(&format!("'{path}'")))
        .map(|l| l.split_whitespace().nth(1).expect("module symbol").to_owned())
        .collect()
}

/// True if the module block loops over every configured account (`accounts` is `mediaAccounts` with defaults).
fn loops_over_every_account(module: &str) -> bool {
    let head: String = module.lines().take(2).collect::<Vec<_>>().join(" ");
    head.contains("for a in accounts:") || head.contains("for (a, i) in accounts:")
}

#[test]
fn every_required_setting_is_always_set_by_the_template() {
    let main = main_bicep();
    let always = handler_settings(&main);
    let missing: Vec<_> =
        SETTINGS.iter().filter(|s| s.need == Need::Required && !always.contains_key(s.name)).map(|s| s.name).collect();
    assert!(missing.is_empty(), "required settings that infra/main.bicep does not set in handlerSettings: {missing:?}");
}

#[test]
fn exactly_one_setting_of_each_group_is_set_and_for_storage_it_is_the_table_endpoint() {
    let main = main_bicep();
    let set = template_setting_names(&main);
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in SETTINGS {
        if let Need::OneOf(group) = s.need {
            groups.entry(group).or_default().push(s.name);
        }
    }
    for (group, members) in &groups {
        let chosen: Vec<_> = members.iter().filter(|m| set.contains(**m)).collect();
        assert_eq!(chosen.len(), 1, "group {group}: the template must set exactly one of {members:?}, sets {chosen:?}");
    }
    let always = handler_settings(&main);
    assert!(always.contains_key("TABLES_ENDPOINT"), "in Azure the tables are reached by endpoint and identity");
    assert!(always["TABLES_ENDPOINT"].contains("storage.outputs.tableEndpoint"));
    assert!(!set.contains("TABLES_CONNECTION_STRING"), "no connection string (it would hold a key)");
}

#[test]
fn every_setting_the_handler_reads_is_known_to_the_template() {
    let main = main_bicep();
    let known = template_setting_names(&main);
    let unknown: Vec<_> = SETTINGS
        .iter()
        .filter(|s| {
            !known.contains(s.name)
                && s.name != "TABLES_CONNECTION_STRING"
                && !matches!(s.need, Need::TestOnly | Need::Platform)
        })
        .map(|s| s.name)
        .collect();
    assert!(
        unknown.is_empty(),
        "settings in config::SETTINGS that infra/main.bicep neither sets nor exposes as an optional parameter \
         (add `param x string = ''` and a line `empty(x) ? {{}} : {{ NAME: x }}` to optionalHandlerSettings): {unknown:?}"
    );
}

#[test]
fn optional_settings_come_from_string_parameters_that_default_to_empty() {
    let main = main_bicep();
    let declared = params(&main);
    let optional = optional_entries(&main);
    assert!(optional.len() >= 3, "optionalHandlerSettings looks empty: {optional:?}");
    for (name, param) in &optional {
        let (ty, default) = declared.get(param).unwrap_or_else(|| panic!("{name}: parameter {param} is not declared"));
        assert_eq!(ty, "string", "{name}: parameter {param} must be a string");
        assert_eq!(default.as_deref(), Some("''"), "{name}: parameter {param} must default to ''");
    }
    let always = handler_settings(&main);
    let both: Vec<_> = optional.keys().filter(|k| always.contains_key(*k)).collect();
    assert!(both.is_empty(), "settings both always set and optional: {both:?}");
}

#[test]
fn the_settings_the_template_produces_are_accepted_by_the_handler() {
    let main = main_bicep();
    let always = handler_settings(&main);

    // MEDIA_ACCOUNTS is built from mediaAccountsSetting: feed the handler one account of each provider with
    // the fields the template passes on for it.
    let setting = block(&main, "var mediaAccountsSetting = [");
    let mut fields: Vec<&str> = Vec::new();
    for part in setting.split(['{', ',']) {
        if let Some((key, _)) = part.split_once(':') {
            let key = key.trim();
            if is_setting_name(key) && key.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                fields.push(key);
            }
        }
    }
    assert!(
        setting.contains(
            "a.provider == 'mkio' ? {} : { subscriptionId: a.subscriptionId, resourceGroup: a.resourceGroup,"
        ),
        "MK.IO projects have no subscription or resource group: {setting}"
    );
    // Each field: which providers' entries carry it, and a sample value.
    let sample = |field: &str| -> (&[&str], serde_json::Value) {
        const ALL: &[&str] = &["ams", "rms", "mkio"];
        const ARM: &[&str] = &["ams", "rms"];
        match field {
            "name" | "region" | "provider" | "stuckAfter" => (ALL, serde_json::Value::Null),
            "subscriptionId" => (ARM, "00000000-0000-0000-0000-000000000000".into()),
            "resourceGroup" => (ARM, "media".into()),
            "mruMode" => (ARM, "automatic".into()),
            "maxMru" => (ARM, 10.into()),
            "armEndpoint" => (ARM, "https://management.azure.com".into()),
            "eventTopic" => (
                &["rms"],
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/media/providers/Microsoft.EventGrid/topics/rms-events".into(),
            ),
            "apiKeySetting" => (&["rms"], "RMS_KEY".into()),
            "project" => (&["mkio"], "video-we".into()),
            "mkioEndpoint" => (&["mkio"], "https://app.mk.io".into()),
            "tokenSetting" => (&["mkio"], "MKIO_KEY".into()),
            "storage" => (
                &["mkio"],
                serde_json::json!({ "name": "stwe", "url": "https://stwe.blob.core.windows.net", "sasSetting": "STWE_SAS" }),
            ),
            "writesPerMinute" => (&["mkio"], 900.into()),
            "readsPerMinute" => (&["mkio"], 1800.into()),
            other => panic!("the template puts field {other:?} into MEDIA_ACCOUNTS; give this test a sample value"),
        }
    };
    let accounts: Vec<serde_json::Value> = ["ams", "rms", "mkio"]
        .iter()
        .map(|provider| {
            let mut account = serde_json::Map::new();
            for field in &fields {
                let (providers, value) = sample(field);
                if !providers.contains(provider) {
                    continue;
                }
                let value = match *field {
                    "name" => format!("{provider}we").into(),
                    "region" => "westeurope".into(),
                    "provider" => (*provider).into(),
                    "stuckAfter" => "15m".into(),
                    _ => value,
                };
                account.insert(field.to_string(), value);
            }
            account.into()
        })
        .collect();
    for required in ["name", "region", "provider", "subscriptionId", "resourceGroup", "eventTopic", "storage"] {
        assert!(fields.contains(&required), "MEDIA_ACCOUNTS entries lack {required}: {fields:?}");
    }

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &always {
        // Literal values are used as they are; values computed at deployment get a sample.
        let literal = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
        let v = match (name.as_str(), literal) {
            (_, Some(l)) => l.to_owned(),
            ("MEDIA_ACCOUNTS", None) => serde_json::Value::Array(accounts.clone()).to_string(),
            ("TABLES_ENDPOINT", None) => "https://stabc.table.core.windows.net".to_owned(),
            ("TRANSFORMS", None) => "encode".to_owned(),
            ("SWEEP_SCHEDULE", None) => "0 */1 * * * *".to_owned(),
            ("SERVICE_BUS_ENDPOINT", None) => "https://sb-abc.servicebus.windows.net".to_owned(),
            ("JOB_EVENTS_TOPIC", None) => "job-events".to_owned(),
            (other, None) => panic!("{other} = {value}: give this test a sample value"),
        };
        env.insert(name.clone(), v);
    }
    // The providers' secrets arrive through mediaSecrets as Key Vault references; here, as values.
    // WEBSITE_HOSTNAME is set by the platform.
    for (name, value) in [
        ("RMS_KEY", "key"),
        // An MK.IO token is a JWT: {"alg":"none"}.{"sub":"u"}.sig
        ("MKIO_KEY", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.sig"),
        ("STWE_SAS", "sv=2024-01-01&sig=x"),
        ("MKIO_WEBHOOK_SECRET", "a-secret-of-sixteen-or-more"),
        ("WEBSITE_HOSTNAME", "func-abc.azurewebsites.net"),
    ] {
        env.insert(name.to_owned(), value.to_owned());
    }
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("the handler accepts the template's settings");
    assert_eq!(settings.accounts.len(), 3);
    assert!(matches!(settings.arm_auth, ams_failover::config::ArmAuth::ManagedIdentity { .. }));

    let declared = params(&main);
    let (_, schedule) = &declared["sweepSchedule"];
    assert_eq!(schedule.as_deref(), Some("'0 */1 * * * *'"), "SweepStuckJobs runs every minute by default");
}

#[test]
fn the_host_connects_by_identity_and_no_setting_holds_a_key() {
    let main = main_bicep();
    let host = host_settings(&main);
    for needed in ["AzureWebJobsStorage__accountName", "ServiceBusConnection__fullyQualifiedNamespace"] {
        assert!(host.contains_key(needed), "hostSettings lacks {needed}");
    }
    // The `alerts` output binding names the connection ServiceBusConnection in every function.json.
    for f in functions_with_binding("serviceBus") {
        let json = read(&format!("{f}/function.json"));
        assert!(json.contains("\"connection\": \"ServiceBusConnection\""), "{f}: unexpected Service Bus connection");
    }
    let all = host.keys().chain(handler_settings(&main).keys()).cloned().collect::<Vec<_>>();
    for name in &all {
        let forbidden = ["AccountKey", "SharedAccessKey", "CONNECTION_STRING", "ConnectionString"];
        let allowed = name == "APPLICATIONINSIGHTS_CONNECTION_STRING"; // names the resource; local auth is off
        assert!(allowed || !forbidden.iter().any(|f| name.contains(f)), "{name} looks like a key or connection string");
        assert!(name != "AzureWebJobsStorage", "AzureWebJobsStorage must use __accountName, not a connection string");
    }
    assert!(!main.contains("listKeys("), "no template may read keys");
    for module in ["storage", "servicebus", "monitoring"] {
        let text = read(&format!("infra/modules/{module}.bicep"));
        assert!(!text.contains("listKeys("), "{module}.bicep reads keys");
    }
    assert!(read("infra/modules/storage.bicep").contains("allowSharedKeyAccess: false"));
    assert!(read("infra/modules/servicebus.bicep").contains("disableLocalAuth: true"));
}

#[test]
fn the_settings_reach_a_linux_custom_handler_function_app() {
    let main = main_bicep();
    let app_module = module_block(&main, "functionApp");
    assert!(
        app_module
            .contains("appSettings: union(hostSettings, handlerSettings, optionalHandlerSettings, extraAppSettings)"),
        "the function app must receive all three settings blocks"
    );
    let app = read("infra/modules/function-app.bicep");
    assert!(app.contains("var plainSettings = [for s in items(appSettings): { name: s.key, value: s.value }]"));
    assert!(app.contains("appSettings: concat(plainSettings, keyVaultReferences)"));
    assert!(app.contains("kind: 'functionapp,linux'"));
    assert!(app.contains("type: 'SystemAssigned'"));
    // Flex Consumption: FUNCTIONS_WORKER_RUNTIME=custom and the ~4 host are set through functionAppConfig.runtime.
    let runtime = block(&app, "runtime: {");
    assert!(runtime.contains("name: 'custom'"), "the worker runtime must be custom: {runtime}");
    assert!(
        app.contains("'azd-service-name': 'handler'"),
        "azd finds the app by this tag (azure.yaml service handler)"
    );
    assert!(read("azure.yaml").contains("  handler:"), "azure.yaml must define the handler service");
}

#[test]
fn every_media_account_gets_a_job_event_subscription_to_the_event_grid_function() {
    let main = main_bicep();
    let targets = functions_with_binding("eventGridTrigger");
    assert_eq!(targets, ["OnJobStateChange"], "the subscription targets the only Event Grid function");

    assert!(
        block(&main, "var accounts = [").contains("for a in mediaAccounts:"),
        "accounts is every mediaAccounts item"
    );
    // AMS accounts: their system topic, in the account's group. Ravnur instances: their custom topic, in the
    // topic's group. MK.IO accounts send webhooks instead.
    let subscriptions = modules_of(&main, "modules/job-events.bicep");
    assert_eq!(subscriptions.len(), 2, "one job-events module loop per Event Grid provider: {subscriptions:?}");
    let ams = module_block(&main, "jobEvents");
    assert!(loops_over_every_account(ams), "job-events must loop over the accounts: {ams}");
    assert!(ams.contains("a.provider == 'ams'"), "system topics exist for AMS accounts: {ams}");
    assert!(ams.contains("scope: resourceGroup(a.subscriptionId, a.resourceGroup)"), "in the account's group");
    assert!(ams.contains("systemTopicName: media[i].outputs.systemTopicName"));
    let rms = module_block(&main, "rmsJobEvents");
    assert!(loops_over_every_account(rms) && rms.contains("a.provider == 'rms'"), "{rms}");
    assert!(rms.contains("scope: resourceGroup(split(a.eventTopic, '/')[2], split(a.eventTopic, '/')[4])"));
    assert!(rms.contains("customTopicName: last(split(a.eventTopic, '/'))"));
    for module in [ams, rms] {
        assert!(module.contains(&format!("functionName: '{}'", targets[0])), "job events must go to {}", targets[0]);
        assert!(module.contains("functionAppId: functionApp.outputs.id"));
    }

    let topics = modules_of(&main, "modules/media-account.bicep");
    assert_eq!(topics.len(), 1);
    let topic_module = module_block(&main, &topics[0]);
    assert!(loops_over_every_account(topic_module) && topic_module.contains("if (a.provider == 'ams')"));
    assert!(topic_module.contains("scope: resourceGroup(a.subscriptionId, a.resourceGroup)"));
    let media = read("infra/modules/media-account.bicep");
    assert!(media.contains("'Microsoft.EventGrid/systemTopics@"));
    assert!(media.contains("topicType: 'Microsoft.Media.MediaServices'"));

    let events = read("infra/modules/job-events.bicep");
    assert!(events.contains("'Microsoft.EventGrid/systemTopics/eventSubscriptions@"));
    assert!(events.contains("'Microsoft.EventGrid/topics/eventSubscriptions@"), "Ravnur's custom topic");
    assert!(events.contains("endpointType: 'AzureFunction'"));
    assert!(events.contains("resourceId: '${functionAppId}/functions/${functionName}'"));
    for event in ["JobScheduled", "JobProcessing", "JobCanceling", "JobFinished", "JobCanceled", "JobErrored"] {
        assert!(events.contains(&format!("'Microsoft.Media.{event}'")), "the subscription must include {event}");
    }
    let retry = block(&events, "retryPolicy: {");
    assert!(retry.contains("maxDeliveryAttempts:") && retry.contains("eventTimeToLiveInMinutes:"));
    let dead_letter = block(&events, "deadLetterWithResourceIdentity: {");
    assert!(dead_letter.contains("endpointType: 'StorageBlob'") && dead_letter.contains("blobContainerName:"));
}

#[test]
fn every_media_account_gets_a_streaming_and_a_key_delivery_traffic_manager_endpoint() {
    let main = main_bicep();
    let profiles = modules_of(&main, "modules/traffic-manager.bicep");
    let mut hosts = BTreeSet::new();
    for symbol in &profiles {
        let module = module_block(&main, symbol);
        // endpoints: <filtered>, where <filtered> = filter(<all>, e => !empty(e.target)) and <all> has one
        // item per account: the AMS account's host output, or the host a Ravnur or MK.IO account names.
        let filtered = module.lines().find_map(|l| l.trim().strip_prefix("endpoints: ")).expect("endpoints");
        let filter = main
            .lines()
            .find_map(|l| l.strip_prefix(&format!("var {filtered} = filter(")))
            .unwrap_or_else(|| panic!("{symbol}: var {filtered} must filter the per-account list"));
        let (all, rest) = filter.split_once(',').expect("filter(list, predicate)");
        assert!(rest.contains("!empty(e.target)"), "{symbol}: only accounts with a host: {filter}");
        let every = block(&main, &format!("var {all} = ["));
        assert!(every.contains("for (a, i) in accounts:"), "{symbol}: one endpoint per account");
        for (output, field, host) in [
            ("streamingHostName", "streamingHostName", "streaming"),
            ("keyDeliveryHostName", "keyDeliveryHostName", "key delivery"),
        ] {
            let ams = format!("a.provider == 'ams' ? media[i].outputs.{output}");
            let other = format!("contains(a, '{field}') ? a.{field} : ''");
            if every.contains(&ams) && every.contains(&other) {
                hosts.insert(host);
            }
        }
    }
    assert_eq!(hosts, BTreeSet::from(["key delivery", "streaming"]), "profiles found: {profiles:?}");

    let tm = read("infra/modules/traffic-manager.bicep");
    let endpoints = block(&tm, "endpoints: [");
    assert!(endpoints.contains("for e in endpoints:"), "the profile must list every endpoint it is given");
    assert!(endpoints.contains("target: e.target") && endpoints.contains("endpointLocation: e.region"));
    let monitor = block(&tm, "monitorConfig: {");
    assert!(monitor.contains("protocol: 'HTTPS'") && monitor.contains("path: probePath"));
    assert!(tm.contains("trafficRoutingMethod: 'Performance'"));
}

#[test]
fn an_mkio_storage_in_a_named_group_gives_the_app_identity_a_data_role_for_user_delegation_sas() {
    let main = main_bicep();
    let module = module_block(&main, "mkioStorageRoles");
    assert!(module.contains("'modules/mkio-storage-role.bicep'"), "{module}");
    assert!(loops_over_every_account(module), "{module}");
    assert!(module.contains("a.provider == 'mkio' && contains(a, 'storageResourceGroup')"), "{module}");
    assert!(module.contains("scope: resourceGroup(a.subscriptionId, a.storageResourceGroup)"));
    assert!(module.contains("principalId: functionApp.outputs.principalId"));
    let role = read("infra/modules/mkio-storage-role.bicep");
    // Storage Blob Data Contributor includes generateUserDelegationKey.
    assert!(role.contains("ba92f5b4-2d11-453d-a403-e96b0029c9fe") && role.contains("scope: storage"));
    // The handler rejects unknown fields: the group is a template-only field, not passed on.
    let setting = block(&main, "var mediaAccountsSetting = [");
    assert!(!setting.contains("storageResourceGroup"), "{setting}");
}

#[test]
fn the_app_identity_gets_the_roles_the_host_and_handler_use() {
    let roles = read("infra/modules/app-roles.bicep");
    for (role, id) in [
        ("Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"),
        ("Storage Table Data Contributor", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"),
        ("Azure Service Bus Data Sender", "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"),
        ("Monitoring Metrics Publisher", "3913510d-42f4-4e42-8a64-420c390055eb"),
        ("Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6"),
    ] {
        assert!(roles.contains(id), "app-roles.bicep lacks {role}");
    }
    let media = read("infra/modules/media-account.bicep");
    assert!(media.contains("b24988ac-6180-42a0-ab57-2498f8a89b74") && media.contains("scope: account"));
    let main = main_bicep();
    assert!(module_block(&main, "appRoles").contains("principalId: functionApp.outputs.principalId"));
}

#[test]
fn the_azd_parameters_file_only_names_declared_parameters() {
    let main = main_bicep();
    let declared = params(&main);
    let file: serde_json::Value = serde_json::from_str(&read("infra/main.parameters.json")).expect("json");
    let given = file["parameters"].as_object().expect("parameters");
    let unknown: Vec<_> = given.keys().filter(|k| !declared.contains_key(*k)).collect();
    assert!(unknown.is_empty(), "main.parameters.json names undeclared parameters: {unknown:?}");
    let required: Vec<_> = declared.iter().filter(|(_, (_, d))| d.is_none()).map(|(n, _)| n).collect();
    let unset: Vec<_> = required.iter().filter(|n| !given.contains_key(n.as_str())).collect();
    assert!(unset.is_empty(), "parameters without default that azd cannot fill: {unset:?}");
    assert!(Path::new(&root().join("infra/checkov-skips.txt")).is_file());
}

#[test]
fn outcome_notifications_go_to_a_topic_with_duplicate_detection_on() {
    let main = main_bicep();
    let always = handler_settings(&main);
    assert!(
        always.get("SERVICE_BUS_ENDPOINT").is_some_and(|v| v.contains("serviceBus.outputs.fullyQualifiedNamespace")),
        "the handler sends to the deployment's namespace: {always:?}"
    );
    assert_eq!(always.get("JOB_EVENTS_TOPIC").map(String::as_str), Some("serviceBus.outputs.topicName"));
    let bus = read("infra/modules/servicebus.bicep");
    let topic = block(&bus, "resource topic 'topics' = {");
    assert!(topic.contains("name: topicName"), "{topic}");
    assert!(topic.contains("requiresDuplicateDetection: true"), "repeats of a message id must be dropped: {topic}");
    assert!(topic.contains("duplicateDetectionHistoryTimeWindow: 'P7D'"), "{topic}");
    assert!(block(topic, "resource all 'subscriptions' = {").contains("name: 'all'"), "a subscription keeps events");
    let params = params(&bus);
    assert_eq!(params["topicName"].1.as_deref(), Some("'job-events'"));
    assert!(module_block(&main, "serviceBus").contains("topicName: 'job-events'"));
    // Sending to the topic needs the same role as the alerts queue, on the namespace.
    let roles = read("infra/modules/app-roles.bicep");
    assert!(block(&roles, "resource serviceBusSender ").contains("scope: serviceBus"));
}

#[test]
fn every_secret_lives_in_the_key_vault_and_reaches_the_app_only_as_a_reference() {
    let main = main_bicep();
    let secrets = secret_entries(&main);
    for name in ["TOKEN_SIGNING_KEY", "CALLBACK_SIGNING_KEY"] {
        assert!(secrets.contains_key(name), "{name} must be a secret setting: {secrets:?}");
    }
    let plain: BTreeSet<String> = handler_settings(&main)
        .into_keys()
        .chain(optional_entries(&main).into_keys())
        .chain(host_settings(&main).into_keys())
        .collect();
    let leaked: Vec<_> = secrets.keys().filter(|n| plain.contains(*n)).collect();
    assert!(leaked.is_empty(), "secrets that are also plain app settings: {leaked:?}");
    // Every setting whose name says it holds a secret, including those of future providers.
    let misplaced: Vec<_> =
        SETTINGS.iter().map(|s| s.name).filter(|n| looks_secret(n) && !secrets.contains_key(*n)).collect();
    assert!(misplaced.is_empty(), "secret settings outside secretHandlerSettings: {misplaced:?}");
    let union = block(&main, "var secretHandlerSettings = union(");
    assert!(union.contains("extraSecretSettings"));
    // The providers' API keys, tokens and SAS are named by the accounts, so they arrive as one JSON object.
    assert!(union.contains("empty(mediaSecrets) ? {} : json(mediaSecrets),"), "{union}");
    let parameters = read("infra/main.parameters.json");
    for (param, env) in [("mediaSecrets", "MEDIA_SECRETS"), ("mkioWebhookSecret", "MKIO_WEBHOOK_SECRET")] {
        assert!(
            parameters.contains(&format!("\"{param}\": {{ \"value\": \"${{{env}=}}\" }}")),
            "azd must pass {env} to {param}"
        );
    }
    let secure = secure_params(&main);
    let always_secure = ["extraSecretSettings", "mediaSecrets", "clientApiKey", "operatorApiKey"];
    for param in secrets.values().map(String::as_str).chain(always_secure) {
        assert!(secure.contains(param), "parameter {param} must be @secure(): {secure:?}");
    }

    let vault_module = module_block(&main, "keyVault");
    assert!(vault_module.contains("'modules/key-vault.bicep'"));
    assert!(vault_module.contains("secretValues: secretHandlerSettings"), "{vault_module}");
    assert!(module_block(&main, "functionApp").contains("keyVaultReferences: keyVault.outputs.references"));
    assert!(!module_block(&main, "functionApp").contains("secretHandlerSettings"), "no secret value reaches the app");

    let vault = read("infra/modules/key-vault.bicep");
    assert!(secure_params(&vault).contains("secretValues"), "the module takes the values as a secure object");
    let props = block(&vault, "resource vault 'Microsoft.KeyVault/vaults@");
    assert!(props.contains("enableRbacAuthorization: true"), "RBAC, no access policies");
    assert!(props.contains("enableSoftDelete: true"));
    assert!(block(&vault, "resource secrets 'Microsoft.KeyVault/vaults/secrets@")
        .contains("for secretName in secretNames:"));
    let references = block(&vault, "output references array = [");
    assert!(references.contains("'@Microsoft.KeyVault(SecretUri=${secrets[i].properties.secretUri})'"), "{references}");
    assert!(!vault.contains("output") || !block(&vault, "output references array = [").contains("secretValues"));
    let app = read("infra/modules/function-app.bicep");
    assert!(app.contains("keyVaultReferenceIdentity: 'SystemAssigned'"));
}

#[test]
fn the_app_identity_reads_secrets_as_key_vault_secrets_user_on_its_vault_only() {
    let roles = read("infra/modules/app-roles.bicep");
    let assignment = block(&roles, "resource secretsUser ");
    assert!(assignment.contains("scope: keyVault"), "{assignment}");
    assert!(assignment.contains("roles.keyVaultSecretsUser"), "{assignment}");
    assert!(!roles.contains("00482a5a-887f-4fb3-b363-3b7fe8e74483"), "not Key Vault Administrator");
    assert!(!roles.contains("b86a8fe4-44ce-4948-aee5-eccb2c155cd7"), "not Key Vault Secrets Officer");
    assert!(module_block(&main_bicep(), "appRoles").contains("keyVaultName: keyVault.outputs.name"));
}

#[test]
fn the_client_and_the_operator_api_get_separate_function_keys() {
    let main = main_bicep();
    let declared = params(&main);
    let list = |name: &str| -> Vec<String> {
        let text = declared[name].1.clone().unwrap_or_default();
        text.trim_matches(['[', ']'])
            .split(',')
            .map(|s| s.trim().trim_matches('\'').to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let client = list("clientApiFunctions");
    let operator = list("operatorApiFunctions");
    assert_eq!(client, ["SubmitJob", "GetJob", "ListJobs", "CancelJob"]);
    assert_eq!(operator, ["GetStatus", "DrainAccount", "ReadmitAccount"]);
    for f in http_functions() {
        // MK.IO cannot present a function key, so its webhook receiver is anonymous and checks the shared
        // secret the webhook rule sends instead (src/functions/on_mkio_event.rs).
        if f == "OnMkioEvent" {
            assert!(read(&format!("{f}/function.json")).contains("\"authLevel\": \"anonymous\""));
            continue;
        }
        let in_client = client.contains(&f);
        let in_operator = operator.contains(&f);
        assert!(
            in_client != in_operator,
            "{f} must belong to exactly one API (client {in_client}, operator {in_operator})"
        );
        let json = read(&format!("{f}/function.json"));
        assert!(json.contains("\"authLevel\": \"function\""), "{f} must require a function key");
    }
    let keys = braced(&main, "module functionKeys ");
    assert!(keys.contains("if (deployEventSubscriptions)"), "keys need the deployed functions: {keys}");
    assert!(
        keys.contains("clientFunctions: clientApiFunctions")
            && keys.contains("operatorFunctions: operatorApiFunctions")
    );
    let module = read("infra/modules/function-keys.bicep");
    let client_keys = block(&module, "resource clientKeys 'Microsoft.Web/sites/functions/keys@");
    assert!(
        client_keys.contains("for f in clientFunctions:")
            && client_keys.contains("name: '${functionAppName}/${f}/client'")
    );
    let operator_keys = block(&module, "resource operatorKeys 'Microsoft.Web/sites/functions/keys@");
    assert!(
        operator_keys.contains("for f in operatorFunctions:")
            && operator_keys.contains("name: '${functionAppName}/${f}/operator'")
    );
    assert!(!module.contains("host/functionKeys"), "host keys open every function");
    assert!(secure_params(&module).is_superset(&BTreeSet::from(["clientKey".to_owned(), "operatorKey".to_owned()])));
}

#[test]
fn entra_id_authentication_is_off_by_default_and_keeps_the_event_grid_webhook_reachable() {
    let main = main_bicep();
    assert_eq!(params(&main)["entraClientId"].1.as_deref(), Some("''"));
    assert!(module_block(&main, "functionApp").contains("entraClientId: entraClientId"));
    let app = read("infra/modules/function-app.bicep");
    let auth = block(&app, "resource auth 'Microsoft.Web/sites/config@");
    assert!(auth.contains("name: 'authsettingsV2'"));
    assert!(auth.contains("platform: { enabled: !empty(entraClientId) }"), "on only with a client id: {auth}");
    assert!(auth.contains("requireAuthentication: !empty(entraClientId)"), "{auth}");
    assert!(auth.contains("unauthenticatedClientAction: 'Return401'"));
    assert!(auth.contains("identityProviders: empty(entraClientId) ? {} : entraProvider"));
    assert!(
        block(&app, "var entraProvider = {").contains("allowedAudiences: [entraClientId, 'api://${entraClientId}']")
    );
    assert!(auth.contains("'/runtime/webhooks/eventgrid'"), "Event Grid delivers without a token: {auth}");
    // MK.IO's webhooks carry a shared secret, not an Entra token: with MK.IO accounts their path stays open.
    assert!(auth.contains("anonymousPaths"), "{auth}");
    assert!(module_block(&main, "functionApp").contains("anonymousPaths: anyMkio ? ['/api/events/mkio'] : []"));
}

#[test]
fn operator_alerts_reach_an_action_group_with_email_and_webhook_receivers() {
    let main = main_bicep();
    let module = module_block(&main, "alerting");
    assert!(module.contains("'modules/alerting.bicep'") && module.contains("scope: rg"));
    assert!(
        module.contains("appInsightsId: monitoring.outputs.appInsightsId"),
        "the rules read the app's logs: {module}"
    );
    assert!(module.contains("emails: empty(alertEmails) ? [] : split(alertEmails, ',')"), "{module}");
    assert!(module.contains("webhookUrl: alertWebhookUrl"));
    let declared = params(&main);
    assert_eq!(declared["alertEmails"], ("string".to_owned(), Some("''".to_owned())));
    assert!(secure_params(&main).contains("alertWebhookUrl"), "a webhook URL usually carries a token");

    let alerting = read("infra/modules/alerting.bicep");
    let group = block(&alerting, "resource actionGroup 'Microsoft.Insights/actionGroups@");
    assert!(group.contains("for (address, i) in emails:") && group.contains("emailAddress: trim(address)"), "{group}");
    assert!(group.contains("webhookReceivers: empty(webhookUrl) ? [] : [{ name: 'webhook', serviceUri: webhookUrl"));
    assert!(group.contains("useCommonAlertSchema: true"));
    let rules = block(&alerting, "resource alertRules 'Microsoft.Insights/scheduledQueryRules@");
    assert!(rules.contains("scopes: [appInsightsId]") && rules.contains("actionGroups: [actionGroup.id]"), "{rules}");
    assert!(rules.contains("threshold: 0") && rules.contains("operator: 'GreaterThan'"));
    assert!(rules.contains("{ name: 'summary', operator: 'Include', values: ['*'] }"), "one notification per alert");
    // The rules look for exactly the line the handler writes.
    let prefix = ams_failover::functions::ALERT_LOG_PREFIX;
    assert!(alerting.contains(&format!("message has \"{prefix}{{\"")), "the query must match {prefix:?}");
    assert!(alerting.contains(&format!("indexof(message, \"{prefix}{{\") + {}", prefix.len())));
    // Urgent alerts are ones the handler raises, and go at severity 1.
    let alert_source = read("src/domain/alert.rs");
    let urgent = code_lines(&alerting).into_iter().find(|l| l.starts_with("var urgentTypes")).expect("var urgentTypes");
    for kind in ["NoHealthyAccount", "RegionRemoved", "LastAccountInRotation"] {
        assert!(urgent.contains(&format!("\"{kind}\"")), "{kind} must be urgent: {urgent}");
        assert!(alert_source.contains(&format!("\"{kind}\"")), "{kind} is not an alert the handler raises");
    }
    assert!(alerting.contains("{ suffix: 'urgent', severity: 1, filter: 'in'"));
    assert!(alerting.contains("{ suffix: 'other', severity: 3, filter: '!in'"));
}
