// The Linux Function App that runs the Rust custom handler, on a Flex Consumption plan (FC1).
// Why Flex and not Consumption or Elastic Premium: see docs/deploy.md, "Hosting plan".
//
// Flex Consumption takes the worker runtime and the host version from `functionAppConfig.runtime` and
// rejects FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION as app settings: `custom` here is what
// FUNCTIONS_WORKER_RUNTIME=custom is on other plans, and Flex runs only the ~4 host.

param location string
param tags object
param name string
param planName string

@description('App settings, name to value. Identity-based connections only: no keys, no secrets.')
param appSettings object

@description('Settings whose values are Key Vault references ({ name, value: @Microsoft.KeyVault(SecretUri=...) }), resolved with the app identity.')
param keyVaultReferences array = []

@description('Client id of an Entra ID app registration to require tokens of (App Service Authentication); empty: off.')
param entraClientId string = ''

@description('More paths that callers without an Entra ID token must reach (webhooks that authenticate otherwise).')
param anonymousPaths array = []

@description('Name of the storage account (AzureWebJobsStorage, deployment package).')
param storageAccountName string

@description('Blob endpoint of the storage account, with the trailing slash.')
param storageBlobEndpoint string

param deploymentContainerName string

@description('Largest number of instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of one instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Instances kept warm for HTTP functions (0 = scale to zero; 1 removes cold starts for SubmitJob/GetJob/GetStatus).')
@minValue(0)
param alwaysReadyHttpInstances int = 0

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

var plainSettings = [for s in items(appSettings): { name: s.key, value: s.value }]

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd deploys the `handler` service of azure.yaml to the resource with this tag.
  tags: union(tags, { 'azd-service-name': 'handler' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references are resolved with this identity (it has Key Vault Secrets User on the vault).
    keyVaultReferenceIdentity: 'SystemAssigned'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(plainSettings, keyVaultReferences)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyHttpInstances > 0 ? [{ name: 'http', instanceCount: alwaysReadyHttpInstances }] : []
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// Basic publishing credentials (FTP and SCM) off: azd deploys with Entra ID.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

// Optional Entra ID in front of the HTTP API (off by default): callers then need a token of the app
// registration as well as the function key. The resource is always deployed, with the platform off when no
// client id is given, so the template states the authentication the app has either way. Event Grid delivers
// to the webhook with the system key, never a token, so its path stays outside authentication (otherwise
// every delivery would be 401).
var entraProvider = {
  azureActiveDirectory: {
    enabled: true
    registration: {
      clientId: entraClientId
      openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    }
    validation: {
      allowedAudiences: [entraClientId, 'api://${entraClientId}']
    }
  }
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads every sites/config as a site's siteConfig; this one holds only authentication settings.
  // checkov:skip=CKV_AZURE_13: this resource is the App Service Authentication setting itself, on with entraClientId
  // checkov:skip=CKV_AZURE_63: HTTP logging is a siteConfig setting, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_65: detailed errors are a siteConfig setting, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_66: failed request tracing is a siteConfig setting, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_80: no .NET Framework: the app is a Rust custom handler
  // checkov:skip=CKV_AZURE_88: Azure Files is a site setting; Flex Consumption uses no content share
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: !empty(entraClientId) }
    globalValidation: {
      requireAuthentication: !empty(entraClientId)
      unauthenticatedClientAction: 'Return401'
      excludedPaths: concat(['/runtime/webhooks/eventgrid', '/runtime/webhooks/EventGrid'], anonymousPaths)
    }
    identityProviders: empty(entraClientId) ? {} : entraProvider
    login: { tokenStore: { enabled: false } }
    httpSettings: { requireHttps: true }
  }
}

output id string = app.id
output name string = app.name
output principalId string = app.identity.principalId
output defaultHostName string = app.properties.defaultHostName
output storageAccountName string = storageAccountName
