// One-command deployment of the cross-region encoding control plane (`azd up`).
//
// Creates, in a new resource group: the Function App that runs the Rust custom handler (Flex Consumption,
// Linux, system-assigned identity), its storage account, the Service Bus namespace with the `alerts` queue
// and the `job-events` topic (duplicate detection on),
// Log Analytics with Application Insights, and two Traffic Manager profiles (streaming origins, key
// delivery), an action group with alert rules that bring the handler's alerts to a person, and a Key Vault that holds every secret the handler reads (the app settings only hold Key Vault
// references). Once the code is deployed it adds the function keys that separate the client API from the
// operator API. For every existing Media Services account it adds, in the account's own resource group: a
// Contributor role for the app, the account's Event Grid system topic and, once the code is deployed, the
// subscription that sends job events to OnJobStateChange. See docs/deploy.md.

targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names and tags the resources.')
param environmentName string

@minLength(1)
@description('Region of the app, its storage, Service Bus and monitoring.')
param location string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

// ---------------------------------------------------------------------------------------------------------
// Media Services accounts
// ---------------------------------------------------------------------------------------------------------

@description('''Media accounts, two or more in different regions, each `provider` ams (default), rms or mkio.
Every item: { name, region, provider?, stuckAfter? }. ams (existing Azure Media Services accounts): resourceGroup,
subscriptionId? (default: this subscription), mruMode? (managed|automatic, default automatic), maxMru? (default 10),
armEndpoint?, systemTopicName? (default <name>-events; give the existing topic's name if the account already has a
system topic), streamingEndpointName? (default default). rms (Ravnur instances): resourceGroup, subscriptionId?,
armEndpoint (the instance's API endpoint), eventTopic (resource id of the instance's Event Grid custom topic),
apiKeySetting?, streamingHostName?, keyDeliveryHostName?. mkio (MK.IO projects): project?, mkioEndpoint?,
tokenSetting?, storage { name, url, sasSetting? }, storageResourceGroup? (with subscriptionId?: the storage's group,
where the app's identity gets Storage Blob Data Contributor to sign user-delegation SAS when no SAS is
configured), writesPerMinute?, readsPerMinute?, streamingHostName?, keyDeliveryHostName?. Secrets (API keys, tokens, SAS) go in mediaSecrets, never here.''')
@minLength(1)
param mediaAccounts array

@description('Comma-separated transforms that exist in every account, each NAME or NAME:OUTPUTS.')
@minLength(1)
param transforms string

@description('Six-field NCRONTAB schedule of SweepStuckJobs.')
param sweepSchedule string = '0 */1 * * * *'

@description('Create the Event Grid subscriptions to OnJobStateChange and the client and operator function keys. They need the functions to exist, so the first provision skips them and the postdeploy hook of azure.yaml turns this on.')
param deployEventSubscriptions bool = false

@description('Event Grid delivery attempts before an event is dead-lettered (1-30).')
param eventMaxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event (1-1440).')
param eventTimeToLiveInMinutes int = 1440

@description('Also subscribe to the generic Microsoft.Media.JobStateChange event.')
param includeGenericJobStateChange bool = false

// ---------------------------------------------------------------------------------------------------------
// Optional handler settings: empty means "not set", and the handler uses its default. To expose a new
// setting, add one parameter here and one line to optionalHandlerSettings below (and to
// main.parameters.json if azd should read it from the environment).
// ---------------------------------------------------------------------------------------------------------

@description('TABLE_PREFIX: prefix of every table name (handler default amsfo).')
param tablePrefix string = ''
@description('AZURE_CLIENT_ID: client id of a user-assigned identity (the template uses the system-assigned one).')
param azureClientId string = ''
@description('ARM_TIMEOUT: timeout of one ARM call, e.g. 30s.')
param armTimeout string = ''
@description('MRU_CACHE_TTL')
param mruCacheTtl string = ''
@description('MRU_SCALE_DOWN')
param mruScaleDown string = ''
@description('MRU_FLOOR')
param mruFloor string = ''
@description('STUCK_AFTER')
param stuckAfter string = ''
@description('STUCK_MIN_JOBS')
param stuckMinJobs string = ''
@description('STUCK_POLICY')
param stuckPolicy string = ''
@description('STUCK_GRACE')
param stuckGrace string = ''
@description('COOLDOWN')
param cooldown string = ''

@description('COOLDOWN_MAX')
param cooldownMax string = ''
@description('SUBMIT_FAILURES_TO_REMOVE')
param submitFailuresToRemove string = ''
@description('RECONCILE_AFTER')
param reconcileAfter string = ''
@description('MAX_ATTEMPTS')
param maxAttempts string = ''
@description('ALERT_REPEAT')
param alertRepeat string = ''
@description('PUBLISH_STREAMING: on to publish finished jobs for streaming in every region.')
param publishStreaming string = ''
@description('STREAMING_POLICY: streaming policy of published locators (default: defaultStreamingPolicy of the definitions file).')
param streamingPolicy string = ''
@description('DEFINITIONS_CHECK_EVERY: how often each account is compared with definitions/media.json.')
param definitionsCheckEvery string = ''
@description('PUBLISH_RETRY: waits after failed publication tries, comma-separated.')
param publishRetry string = ''
@description('CALLBACK_RETRY: waits after failed callbacks, comma-separated; then they are given up.')
param callbackRetry string = ''
@description('TRAFFIC_MANAGER_HOST: host name viewers use for key delivery (a custom domain CNAMEd to the key delivery profile).')
param trafficManagerHost string = ''
@description('STREAMING_TRAFFIC_MANAGER_HOST: host name viewers use for streaming (a custom domain CNAMEd to the streaming profile).')
param streamingTrafficManagerHost string = ''
@description('MKIO_WEBHOOK_URL: with MK.IO accounts, the public URL of OnMkioEvent; empty: the handler uses https://<the app\'s default host name>/api/events/mkio, from WEBSITE_HOSTNAME. Set it when a custom domain or a gateway fronts the app.')
param mkioWebhookUrl string = ''

@description('More app settings, name to value, for settings that have no parameter yet. Never put secrets here: use extraSecretSettings.')
param extraAppSettings object = {}

// ---------------------------------------------------------------------------------------------------------
// Secrets: each is written to the Key Vault, and the app setting of the same name is a Key Vault reference
// the platform resolves with the app's identity. None is ever a plain app setting.
// ---------------------------------------------------------------------------------------------------------

@description('TOKEN_SIGNING_KEY: base64 token verification key, needed with PUBLISH_STREAMING=on. The key itself: it goes to the Key Vault.')
@secure()
param tokenSigningKey string = ''
@description('CALLBACK_SIGNING_KEY: key (at least 32 characters) that signs callbacks; without it SubmitJob refuses callbackUrl. It goes to the Key Vault.')
@secure()
param callbackSigningKey string = ''
@description('MKIO_WEBHOOK_SECRET: with MK.IO accounts, the shared secret (16 characters or more) the webhook rule sends; the preprovision hook generates one when MEDIA_ACCOUNTS has an mkio account. It goes to the Key Vault.')
@secure()
param mkioWebhookSecret string = ''
@description('MEDIA_SECRETS: secrets of the media providers as a JSON object, setting name to value: RMS_API_KEY_<NAME> of each rms account, MKIO_TOKEN_<NAME> and MKIO_STORAGE_SAS_<NAME> of each mkio account (or the names their apiKeySetting, tokenSetting and sasSetting give). Each goes to the Key Vault and reaches the app as a reference. A string, so that azd can pass it from one environment value.')
@secure()
param mediaSecrets string = ''
@description('More secret app settings, name to value: each goes to the Key Vault and reaches the app as a reference.')
@secure()
param extraSecretSettings object = {}

@description('Purge protection of the Key Vault (recommended). Turn it off only for throw-away environments that are deleted and recreated under the same name: a purge-protected vault keeps its name for 90 days after deletion.')
param keyVaultPurgeProtection bool = true

// ---------------------------------------------------------------------------------------------------------
// Access: separate function keys for the client and the operator API, and optional Entra ID in front
// ---------------------------------------------------------------------------------------------------------

@description('Value of the function key named `client` on every client API function (a random string of 32 or more characters; azure.yaml generates one). Empty: each function gets a generated key of its own.')
@secure()
param clientApiKey string = ''
@description('Value of the function key named `operator` on every operator API function. Empty: each function gets a generated key of its own.')
@secure()
param operatorApiKey string = ''
@description('Functions of the client API: they get the `client` key.')
param clientApiFunctions array = ['SubmitJob', 'GetJob', 'ListJobs', 'CancelJob']
@description('Functions of the operator API: they get the `operator` key.')
param operatorApiFunctions array = ['GetStatus', 'DrainAccount', 'ReadmitAccount']

// ---------------------------------------------------------------------------------------------------------
// Alerts that reach a person
// ---------------------------------------------------------------------------------------------------------

@description('Comma-separated email addresses of the action group that receives the operator alerts.')
param alertEmails string = ''
@description('A webhook that receives the operator alerts too (PagerDuty, Opsgenie, a chat), in the common alert schema.')
@secure()
param alertWebhookUrl string = ''

@description('Client id of an Entra ID app registration: when given, App Service Authentication requires a token of that app (audience the client id or api://<client id>) on every HTTP call, in front of the function keys. Empty (default): function keys only.')
param entraClientId string = ''

// ---------------------------------------------------------------------------------------------------------
// Sizing and Traffic Manager
// ---------------------------------------------------------------------------------------------------------

@description('Replication of the app storage account (host state and the handler tables); ZRS or GZRS where the region has zones.')
param storageSkuName string = 'Standard_LRS'

@description('Largest number of Function App instances (40-1000).')
param maximumInstanceCount int = 100

@description('Memory of one instance in MB (512, 2048 or 4096).')
param instanceMemoryMB int = 2048

@description('Always-ready instances for the HTTP functions (0 scales to zero).')
param alwaysReadyHttpInstances int = 0

@description('Path probed on every streaming origin; must answer 200, e.g. the manifest of a small probe asset published in every region under the same locator.')
param streamingProbePath string = '/'

@description('Status codes that count as healthy for streaming origins.')
param streamingProbeStatusRanges array = [{ min: 200, max: 200 }]

@description('Path probed on every key delivery host.')
param keyDeliveryProbePath string = '/'

@description('Status codes that count as healthy for key delivery. It has no documented health URL; without a key id and token it answers 4xx, which still proves the service is up, while 5xx and timeouts do not.')
param keyDeliveryProbeStatusRanges array = [{ min: 200, max: 499 }]

// ---------------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------------

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))
var rgName = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
var deploymentContainerName = 'app-package-${token}'
var deadLetterContainerName = 'eventgrid-deadletter'

// Defaults of the optional account fields, then the account as given.
var accounts = [
  for a in mediaAccounts: union({ provider: 'ams', subscriptionId: subscription().subscriptionId, mruMode: 'automatic', maxMru: 10, systemTopicName: '${a.name}-events', streamingEndpointName: 'default' }, a)
]

// MEDIA_ACCOUNTS as the handler reads it. It rejects unknown fields, so the template-only fields
// (systemTopicName, streamingEndpointName, streamingHostName, keyDeliveryHostName, storageResourceGroup) stay out, and MK.IO projects,
// which have no subscription, resource group or reserved units, get none of those.
var mediaAccountsSetting = [
  for a in accounts: union({ name: a.name, region: a.region, provider: a.provider },
    a.provider == 'mkio' ? {} : { subscriptionId: a.subscriptionId, resourceGroup: a.resourceGroup, mruMode: a.mruMode, maxMru: a.maxMru },
    contains(a, 'armEndpoint') ? { armEndpoint: a.armEndpoint } : {},
    contains(a, 'stuckAfter') ? { stuckAfter: a.stuckAfter } : {},
    contains(a, 'eventTopic') ? { eventTopic: a.eventTopic } : {},
    contains(a, 'apiKeySetting') ? { apiKeySetting: a.apiKeySetting } : {},
    contains(a, 'project') ? { project: a.project } : {},
    contains(a, 'mkioEndpoint') ? { mkioEndpoint: a.mkioEndpoint } : {},
    contains(a, 'tokenSetting') ? { tokenSetting: a.tokenSetting } : {},
    contains(a, 'storage') ? { storage: a.storage } : {},
    contains(a, 'writesPerMinute') ? { writesPerMinute: a.writesPerMinute } : {},
    contains(a, 'readsPerMinute') ? { readsPerMinute: a.readsPerMinute } : {})
]
var anyMkio = length(filter(accounts, a => a.provider == 'mkio')) > 0

// ---------------------------------------------------------------------------------------------------------
// Resources of the app
// ---------------------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${token}'
    appInsightsName: 'appi-${token}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'st${token}'
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    skuName: storageSkuName
  }
}

module alerting 'modules/alerting.bicep' = {
  name: 'alerting'
  scope: rg
  params: {
    location: location
    tags: tags
    actionGroupName: 'ag-${token}'
    ruleNamePrefix: 'alert-${token}'
    appInsightsId: monitoring.outputs.appInsightsId
    emails: empty(alertEmails) ? [] : split(alertEmails, ',')
    webhookUrl: alertWebhookUrl
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'sb-${token}'
    queueName: 'alerts'
    topicName: 'job-events'
  }
}

// Settings of the Functions host: identity-based connections only, no keys.
var hostSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
}

// Settings the handler always gets (src/config.rs SETTINGS; tests/infra.rs checks this block).
var handlerSettings = {
  MEDIA_ACCOUNTS: string(mediaAccountsSetting)
  TRANSFORMS: transforms
  TABLES_ENDPOINT: storage.outputs.tableEndpoint
  ARM_AUTH: 'managed-identity'
  SWEEP_SCHEDULE: sweepSchedule
  SERVICE_BUS_ENDPOINT: 'https://${serviceBus.outputs.fullyQualifiedNamespace}'
  JOB_EVENTS_TOPIC: serviceBus.outputs.topicName
}

// Settings set only when their parameter is not empty (tests/infra.rs checks this block too).
var optionalHandlerSettings = union(
  empty(tablePrefix) ? {} : { TABLE_PREFIX: tablePrefix },
  empty(azureClientId) ? {} : { AZURE_CLIENT_ID: azureClientId },
  empty(armTimeout) ? {} : { ARM_TIMEOUT: armTimeout },
  empty(mruCacheTtl) ? {} : { MRU_CACHE_TTL: mruCacheTtl },
  empty(mruScaleDown) ? {} : { MRU_SCALE_DOWN: mruScaleDown },
  empty(mruFloor) ? {} : { MRU_FLOOR: mruFloor },
  empty(stuckAfter) ? {} : { STUCK_AFTER: stuckAfter },
  empty(stuckMinJobs) ? {} : { STUCK_MIN_JOBS: stuckMinJobs },
  empty(stuckPolicy) ? {} : { STUCK_POLICY: stuckPolicy },
  empty(stuckGrace) ? {} : { STUCK_GRACE: stuckGrace },
  empty(cooldown) ? {} : { COOLDOWN: cooldown },
  empty(cooldownMax) ? {} : { COOLDOWN_MAX: cooldownMax },
  empty(submitFailuresToRemove) ? {} : { SUBMIT_FAILURES_TO_REMOVE: submitFailuresToRemove },
  empty(reconcileAfter) ? {} : { RECONCILE_AFTER: reconcileAfter },
  empty(maxAttempts) ? {} : { MAX_ATTEMPTS: maxAttempts },
  empty(alertRepeat) ? {} : { ALERT_REPEAT: alertRepeat },
  empty(trafficManagerHost) ? {} : { TRAFFIC_MANAGER_HOST: trafficManagerHost },
  empty(streamingTrafficManagerHost) ? {} : { STREAMING_TRAFFIC_MANAGER_HOST: streamingTrafficManagerHost },
  empty(publishStreaming) ? {} : { PUBLISH_STREAMING: publishStreaming },
  empty(streamingPolicy) ? {} : { STREAMING_POLICY: streamingPolicy },
  empty(definitionsCheckEvery) ? {} : { DEFINITIONS_CHECK_EVERY: definitionsCheckEvery },
  empty(publishRetry) ? {} : { PUBLISH_RETRY: publishRetry },
  empty(callbackRetry) ? {} : { CALLBACK_RETRY: callbackRetry },
  empty(mkioWebhookUrl) ? {} : { MKIO_WEBHOOK_URL: mkioWebhookUrl }
)

// Secret settings (tests/infra.rs checks this block): they go to the Key Vault, and the app gets references.
var secretHandlerSettings = union(
  empty(tokenSigningKey) ? {} : { TOKEN_SIGNING_KEY: tokenSigningKey },
  empty(callbackSigningKey) ? {} : { CALLBACK_SIGNING_KEY: callbackSigningKey },
  empty(mkioWebhookSecret) ? {} : { MKIO_WEBHOOK_SECRET: mkioWebhookSecret },
  empty(mediaSecrets) ? {} : json(mediaSecrets),
  extraSecretSettings
)
var secretSettingNames = [for s in items(secretHandlerSettings): s.key]

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'kv-${token}'
    secretNames: secretSettingNames
    secretValues: secretHandlerSettings
    purgeProtection: keyVaultPurgeProtection
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'func-${token}'
    planName: 'plan-${token}'
    appSettings: union(hostSettings, handlerSettings, optionalHandlerSettings, extraAppSettings)
    keyVaultReferences: keyVault.outputs.references
    entraClientId: entraClientId
    // MK.IO delivers webhooks with the shared secret, never with an Entra ID token.
    anonymousPaths: anyMkio ? ['/api/events/mkio'] : []
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
}

module appRoles 'modules/app-roles.bicep' = {
  name: 'app-roles'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    serviceBusName: serviceBus.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultName: keyVault.outputs.name
  }
}

// MK.IO projects whose storage names its resource group (storageResourceGroup) and has no configured SAS: the
// app's identity signs user-delegation SAS for it, which needs a data role on that storage account.
module mkioStorageRoles 'modules/mkio-storage-role.bicep' = [
  for a in accounts: if (a.provider == 'mkio' && contains(a, 'storageResourceGroup')) {
    name: 'mkio-storage-role-${a.name}'
    scope: resourceGroup(a.subscriptionId, a.storageResourceGroup)
    params: {
      principalId: functionApp.outputs.principalId
      storageAccountName: split(split(a.storage.url, '//')[1], '.')[0]
    }
  }
]

// Function keys need the functions, which exist once the code is deployed: the same second provision that
// adds the Event Grid subscriptions (azure.yaml postdeploy) adds them.
module functionKeys 'modules/function-keys.bicep' = if (deployEventSubscriptions) {
  name: 'function-keys'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    clientFunctions: clientApiFunctions
    operatorFunctions: operatorApiFunctions
    clientKey: clientApiKey
    operatorKey: operatorApiKey
  }
}

// ---------------------------------------------------------------------------------------------------------
// Per Azure Media Services account, in the account's resource group. Ravnur instances publish their events on
// a custom topic of their own (below); MK.IO projects live outside Azure and send webhooks, which the handler
// subscribes itself.
// ---------------------------------------------------------------------------------------------------------

module media 'modules/media-account.bicep' = [
  for a in accounts: if (a.provider == 'ams') {
    name: 'media-${a.name}'
    scope: resourceGroup(a.subscriptionId, a.resourceGroup)
    params: {
      accountName: a.name
      region: a.region
      appPrincipalId: functionApp.outputs.principalId
      systemTopicName: a.systemTopicName
      streamingEndpointName: a.streamingEndpointName
      tags: tags
    }
  }
]

module deadLetterRoles 'modules/dead-letter-role.bicep' = [
  for (a, i) in accounts: if (a.provider == 'ams') {
    name: 'dead-letter-role-${a.name}'
    scope: rg
    params: {
      storageAccountName: storage.outputs.name
      containerName: deadLetterContainerName
      topicPrincipalId: media[i].outputs.systemTopicPrincipalId
    }
  }
]

module jobEvents 'modules/job-events.bicep' = [
  for (a, i) in accounts: if (deployEventSubscriptions && a.provider == 'ams') {
    name: 'job-events-${a.name}'
    scope: resourceGroup(a.subscriptionId, a.resourceGroup)
    dependsOn: [deadLetterRoles]
    params: {
      systemTopicName: media[i].outputs.systemTopicName
      functionAppId: functionApp.outputs.id
      functionName: 'OnJobStateChange'
      deadLetterStorageId: storage.outputs.id
      deadLetterContainerName: deadLetterContainerName
      maxDeliveryAttempts: eventMaxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
      includeGenericJobStateChange: includeGenericJobStateChange
    }
  }
]

// Each Ravnur instance's custom topic (eg-topic-<suffix> in the instance's resource group, its resource id in
// eventTopic) delivers the same AMS-schema job events to OnJobStateChange. The topic belongs to the instance,
// which gives it no identity the template could use for dead-lettering, so its subscription has none: the
// sweep's reconciliation reads any job whose events were lost.
module rmsJobEvents 'modules/job-events.bicep' = [
  for a in accounts: if (deployEventSubscriptions && a.provider == 'rms') {
    name: 'rms-job-events-${a.name}'
    scope: resourceGroup(split(a.eventTopic, '/')[2], split(a.eventTopic, '/')[4])
    params: {
      customTopicName: last(split(a.eventTopic, '/'))
      functionAppId: functionApp.outputs.id
      functionName: 'OnJobStateChange'
      maxDeliveryAttempts: eventMaxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
      includeGenericJobStateChange: includeGenericJobStateChange
    }
  }
]

// ---------------------------------------------------------------------------------------------------------
// Traffic Manager: one endpoint per account in each profile (Ravnur and MK.IO accounts when they name their hosts)
// ---------------------------------------------------------------------------------------------------------

// AMS accounts name their hosts through their resources; Ravnur and MK.IO accounts give streamingHostName and
// keyDeliveryHostName in MEDIA_ACCOUNTS, and one that gives none is left out of that profile.
var streamingOriginsAll = [
  for (a, i) in accounts: {
    name: a.name
    region: a.region
    target: a.provider == 'ams' ? media[i].outputs.streamingHostName : (contains(a, 'streamingHostName') ? a.streamingHostName : '')
  }
]
var streamingOrigins = filter(streamingOriginsAll, e => !empty(e.target))
var keyDeliveryHostsAll = [
  for (a, i) in accounts: {
    name: a.name
    region: a.region
    target: a.provider == 'ams' ? media[i].outputs.keyDeliveryHostName : (contains(a, 'keyDeliveryHostName') ? a.keyDeliveryHostName : '')
  }
]
var keyDeliveryHosts = filter(keyDeliveryHostsAll, e => !empty(e.target))

module streamingTrafficManager 'modules/traffic-manager.bicep' = {
  name: 'tm-streaming'
  scope: rg
  params: {
    name: 'tm-streaming-${token}'
    dnsLabel: 'ams-streaming-${token}'
    tags: tags
    probePath: streamingProbePath
    expectedStatusCodeRanges: streamingProbeStatusRanges
    endpoints: streamingOrigins
  }
}

module keyDeliveryTrafficManager 'modules/traffic-manager.bicep' = {
  name: 'tm-key-delivery'
  scope: rg
  params: {
    name: 'tm-keys-${token}'
    dnsLabel: 'ams-keys-${token}'
    tags: tags
    probePath: keyDeliveryProbePath
    expectedStatusCodeRanges: keyDeliveryProbeStatusRanges
    endpoints: keyDeliveryHosts
  }
}

// ---------------------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment)
// ---------------------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output JOB_EVENTS_TOPIC string = serviceBus.outputs.topicName
output KEY_VAULT_NAME string = keyVault.outputs.name
output ALERT_ACTION_GROUP string = alerting.outputs.actionGroupName
output STREAMING_TRAFFIC_MANAGER_FQDN string = streamingTrafficManager.outputs.fqdn
output KEY_DELIVERY_TRAFFIC_MANAGER_FQDN string = keyDeliveryTrafficManager.outputs.fqdn
output EVENT_SUBSCRIPTIONS_DEPLOYED bool = deployEventSubscriptions
