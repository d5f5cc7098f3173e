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

@description('App settings, name to value. Identity-based connections only: no keys.')
param appSettings object

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
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for s in items(appSettings): { name: s.key, value: s.value }]
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

output id string = app.id
output name string = app.name
output principalId string = app.identity.principalId
output defaultHostName string = app.properties.defaultHostName
output storageAccountName string = storageAccountName
